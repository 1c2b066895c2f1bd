-- Which ingest process may publish an undispatched event. Set when a process stores the
-- event, or takes over one whose claim is free or stale; cleared when its publish fails.
-- Several ingest replicas then never publish the same idempotency key at once.
ALTER TABLE events ADD COLUMN dispatch_claimed_at timestamptz;
