-- Daily partitions of events, deliveries and delivery_attempts, run by shared/stores/partitions.py
-- (services/ingest/retention.py decides when; these read the catalogue and make partitions ahead).

-- name: ensure
SELECT hookline_ensure_partitions((now() AT TIME ZONE 'UTC')::date - 1,
                                  (now() AT TIME ZONE 'UTC')::date + $1::int)

-- name: list
SELECT parent.relname AS parent, child.relname AS name,
       pg_total_relation_size(child.oid) AS bytes, greatest(child.reltuples, 0) AS rows
FROM pg_inherits i
JOIN pg_class parent ON parent.oid = i.inhparent
JOIN pg_class child ON child.oid = i.inhrelid
WHERE i.inhparent = ANY($1::regclass[])

-- name: legacy_until
SELECT legacy_until FROM partitioning_cutover

-- name: estimated_rows
SELECT CASE WHEN reltuples >= 0 THEN reltuples::bigint END FROM pg_class WHERE oid = $1::regclass

-- The oldest row of each table, for hookline_table_oldest_seconds; each reads one end of an
-- index (ids begin with their time).
-- name: oldest_event
SELECT min(created_at) FROM events

-- name: oldest_delivery
SELECT created_at FROM deliveries ORDER BY event_id LIMIT 1

-- name: oldest_attempt
SELECT attempted_at FROM delivery_attempts ORDER BY id LIMIT 1

-- name: oldest_idempotency_key
SELECT min(accepted_at) FROM idempotency_keys

-- This replica's turn for DDL until the transaction ends; DDL then waits for its lock at
-- most $1 (a text such as '5s') and gives up until the next pass.
-- name: take_ddl_lock
SELECT set_config('lock_timeout', $1, true), pg_try_advisory_xact_lock($2) AS taken

-- name: exists
SELECT to_regclass($1) IS NOT NULL

-- The statements below name one partition, which a parameter cannot: `{partition}` (and
-- `{partitions}`) are filled in by shared/stores/partitions.py, quoted.
-- name: lock_partitions
LOCK TABLE {partitions} IN ACCESS EXCLUSIVE MODE

-- name: pending_in
SELECT EXISTS (SELECT 1 FROM {partition} WHERE status = 'pending')

-- A pending delivery (in any partition) whose attempts are in this attempts partition.
-- name: pending_attempts_in
SELECT EXISTS (SELECT 1 FROM deliveries d
               JOIN {partition} a ON a.delivery_id = d.id WHERE d.status = 'pending')

-- name: count_rows
SELECT count(*) FROM {partition}

-- name: drop
DROP TABLE {partition}
