-- Daily partitions of events, deliveries and delivery_attempts (services/ingest/retention.py
-- decides when; these read the catalogue and make partitions ahead).

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
