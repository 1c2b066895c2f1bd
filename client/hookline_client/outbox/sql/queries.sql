-- name: claim
-- Committed rows not yet published, locked for this relay; other relays skip them.
SELECT seq, idempotency_key, type, data::text AS data, tenant_id
FROM hookline_outbox
WHERE published_at IS NULL
ORDER BY seq
LIMIT $1
FOR UPDATE SKIP LOCKED;

-- name: mark
UPDATE hookline_outbox SET published_at = clock_timestamp() WHERE seq = ANY($1::bigint[]);

-- name: purge
DELETE FROM hookline_outbox
WHERE seq IN (
    SELECT seq FROM hookline_outbox
    WHERE published_at < clock_timestamp() - make_interval(secs => $1)
    LIMIT $2
);

-- name: stats
SELECT count(*) AS pending,
       coalesce(extract(epoch FROM clock_timestamp() - min(created_at)), 0)::float8 AS oldest_s
FROM hookline_outbox
WHERE published_at IS NULL;

-- name: notify
SELECT hookline_outbox_notify($1, $2::jsonb, $3, $4);
