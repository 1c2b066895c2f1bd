-- The overdue sweep (services/sender/overdue.py) looks for pending deliveries whose next
-- attempt is long overdue; this index keeps that a short range scan however many settled
-- deliveries the table holds.
CREATE INDEX deliveries_pending_due ON deliveries ((COALESCE(next_attempt_at, created_at)))
    WHERE status = 'pending';
