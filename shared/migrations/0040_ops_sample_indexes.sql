-- Partial indexes for the backlog sampler (shared/backlog.py), which one process runs every
-- few seconds: without them each sample would scan every delivery kept for the retention
-- period and every subscription. Each holds only the rows it is for: deliveries not yet
-- attempted (the backlog, not the history) and subscriptions failing or parked (few).
CREATE INDEX deliveries_pending_unattempted ON deliveries (created_at)
    WHERE status = 'pending' AND attempts = 0;
CREATE INDEX subscriptions_failing ON subscriptions (failing_since)
    WHERE failing_since IS NOT NULL;
CREATE INDEX subscriptions_parked ON subscriptions (parked_until)
    WHERE parked_until IS NOT NULL;
