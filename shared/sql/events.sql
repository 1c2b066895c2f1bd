-- events: every accepted event, partitioned by id (0006), with its dispatch state.

-- name: list_page
SELECT id, type, data, tenant_id, idempotency_key, source, created_at, dispatched_at
FROM events
WHERE ($1::text IS NULL OR type = $1)
  AND ($2::text IS NULL OR tenant_id = $2)
  AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4))
ORDER BY created_at DESC, id DESC LIMIT $5

-- name: mark_dispatched
UPDATE events SET dispatched_at = now() WHERE id = ANY($1::text[]) AND dispatched_at IS NULL

-- Only a claim still holding the timestamp its holder set: a claim taken over after it went
-- stale belongs to another process, and clearing it would let a third one publish too.
-- name: release_claims
UPDATE events e SET dispatch_claimed_at = NULL
FROM unnest($1::text[], $2::timestamptz[]) AS c(id, claim)
WHERE e.id = c.id AND e.dispatch_claimed_at = c.claim AND e.dispatched_at IS NULL

-- name: dispatch_state
SELECT dispatched_at, dispatch_claimed_at FROM events WHERE id = $1

-- name: insert_test_event
INSERT INTO events (id, type, data, tenant_id, source, dispatched_at)
VALUES ($1, $2, $3, $4, 'http', now()) RETURNING created_at
