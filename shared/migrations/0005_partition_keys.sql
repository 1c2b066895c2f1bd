-- Step 2 of partitioning (issue 16). Validating scans the tables under a SHARE UPDATE
-- EXCLUSIVE lock: reads and writes go on meanwhile.
ALTER TABLE events VALIDATE CONSTRAINT events_legacy_range;
ALTER TABLE deliveries VALIDATE CONSTRAINT deliveries_legacy_range;
ALTER TABLE delivery_attempts VALIDATE CONSTRAINT delivery_attempts_legacy_range;

-- A partitioned table's unique keys include its partition key. Built here, on the existing
-- tables, these are what 0007's keys attach to. A build holds writes to its table (not
-- reads) until it ends: on a large database, run `hookline migrate` in a quiet hour.
CREATE UNIQUE INDEX deliveries_id_event ON deliveries (id, event_id);
CREATE UNIQUE INDEX delivery_attempts_id_attempted ON delivery_attempts (id, attempted_at);
-- What retention asks before dropping a partition: does it hold a pending delivery?
CREATE INDEX deliveries_pending_legacy ON deliveries (event_id) WHERE status = 'pending';
