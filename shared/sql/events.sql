-- events: every accepted event, partitioned by id (0006), with its dispatch state.

-- fragment: e_columns
e.id, e.type, e.data, e.tenant_id, e.idempotency_key, e.source, e.created_at, e.dispatched_at

-- fragment: columns
id, type, data, tenant_id, idempotency_key, source, created_at, dispatched_at

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

-- One statement for a whole batch: the rows it inserted, then the rows already holding the
-- keys it skipped. A key is its tenant's (`scope`: the tenant_id, '' without one) and lives
-- in `idempotency_keys`; one past the window ($7 seconds after its first acceptance) is
-- taken over by the new event. The last branch reads the snapshot from before the INSERTs,
-- so it sees only keys that existed before; a key committed by another process meanwhile
-- is read after (`_BY_KEYS`). Each key's event is looked up by id, pruned to its partition
-- (OFFSET 0 keeps the planner from hashing every event instead).
-- name: insert_many
WITH input AS (
    SELECT t.*, COALESCE(t.tenant_id, '') AS scope
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
        AS t(id, type, data, tenant_id, idempotency_key, source)
), keyed AS (
    INSERT INTO idempotency_keys AS k (scope, key, event_id)
    SELECT scope, idempotency_key, id FROM input WHERE idempotency_key IS NOT NULL
    ON CONFLICT (scope, key) DO UPDATE SET event_id = excluded.event_id, accepted_at = now()
        WHERE k.accepted_at <= now() - $7::float8 * interval '1 second'
    RETURNING k.event_id
), inserted AS (
    INSERT INTO events (id, type, data, tenant_id, idempotency_key, source, dispatch_claimed_at)
    SELECT id, type, data::jsonb, tenant_id, idempotency_key, source, now() FROM input
    WHERE idempotency_key IS NULL OR id IN (SELECT event_id FROM keyed)
    RETURNING {{columns}}, dispatch_claimed_at
)
SELECT true AS inserted, {{columns}}, dispatch_claimed_at FROM inserted
UNION ALL
SELECT false, {{e_columns}}, NULL
FROM input i
JOIN idempotency_keys k ON k.scope = i.scope AND k.key = i.idempotency_key
JOIN LATERAL (SELECT * FROM events e WHERE e.id = k.event_id OFFSET 0) e ON true
WHERE i.id NOT IN (SELECT event_id FROM keyed)

-- name: by_keys
SELECT {{e_columns}}
FROM unnest($1::text[], $2::text[]) AS i(scope, key)
JOIN idempotency_keys k USING (scope, key)
JOIN LATERAL (SELECT * FROM events e WHERE e.id = k.event_id OFFSET 0) e ON true

-- name: get
SELECT {{columns}} FROM events WHERE id = $1

-- The UPDATE re-checks its condition on the newest row version, so of two processes claiming
-- one event at once exactly one gets it. The SELECT reads the statement's snapshot: a row
-- dispatched meanwhile may still look undispatched (and unclaimed here), never the reverse.
-- name: claim
WITH claimed AS (
    UPDATE events SET dispatch_claimed_at = now()
    WHERE id = ANY($1::text[]) AND dispatched_at IS NULL
      AND (dispatch_claimed_at IS NULL
           OR dispatch_claimed_at < now() - $2::float8 * interval '1 second')
    RETURNING id, dispatch_claimed_at
)
SELECT c.dispatch_claimed_at AS claim, {{e_columns}}
FROM events e LEFT JOIN claimed c ON c.id = e.id
WHERE e.id = ANY($1::text[])
