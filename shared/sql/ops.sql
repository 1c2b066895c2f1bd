-- What the sampler reads for the backlog metrics (shared/stores/ops.py, for shared/sampler.py).

-- name: database_sample
SELECT
  coalesce((SELECT extract(epoch FROM now() - created_at)::float8
     FROM deliveries WHERE status = 'pending' AND attempts = 0
     ORDER BY created_at LIMIT 1), 0) AS oldest_pending_s,
  (SELECT count(*) FROM subscriptions
     WHERE failing_since IS NOT NULL AND status = 'enabled' AND deleted_at IS NULL) AS failing,
  (SELECT count(*) FROM subscriptions
     WHERE parked_until > now() AND status = 'enabled' AND deleted_at IS NULL) AS parked

-- The sampler's leadership: held by its session until it closes.
-- name: try_sampler_lock
SELECT pg_try_advisory_lock($1)
