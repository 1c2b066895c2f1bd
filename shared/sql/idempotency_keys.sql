-- idempotency_keys: (tenant scope, key) -> event, kept for HOOKLINE_IDEMPOTENCY_WINDOW.
-- Written with its event (insert_many in events.sql); purged and measured here
-- (shared/stores/idempotency_keys.py, for services/ingest/retention.py).

-- name: purge_expired
DELETE FROM idempotency_keys k
USING (SELECT scope, key FROM idempotency_keys
       WHERE accepted_at < now() - $1::float8 * interval '1 second'
       ORDER BY accepted_at LIMIT $2) old
WHERE k.scope = old.scope AND k.key = old.key
  AND k.accepted_at < now() - $1::float8 * interval '1 second'

-- name: size
SELECT pg_total_relation_size('idempotency_keys'::regclass) AS bytes,
       greatest(reltuples, 0) AS rows FROM pg_class WHERE oid = 'idempotency_keys'::regclass
