-- deliveries: one row per (event, subscription) match, partitioned by event id (0007).
-- Written by fanout (insert_pending), the sender (the outcome of each attempt) and the API
-- (retries, recoveries); every statement that reads or writes it is here.

-- fragment: from_by_id
FROM deliveries d JOIN LATERAL (SELECT e.id, e.type, e.data, e.created_at, e.tenant_id FROM events e WHERE e.id = d.event_id OFFSET 0) e ON true

-- fragment: columns
d.id, d.event_id, d.subscription_id, e.type AS event_type, d.status, d.attempts, d.last_status_code, d.last_error, d.last_attempt_at, d.next_attempt_at, d.created_at, d.updated_at

-- The id is derived from (event, subscription), so a redelivered event finds its rows there
-- already and adds none.
-- Returns the ids it inserted: a row that existed was routed before, and its delivery may
-- have been published already (the sender then checks what was done).
-- name: insert_pending
INSERT INTO deliveries (id, event_id, subscription_id)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
ON CONFLICT DO NOTHING
RETURNING id

-- name: pending_again
UPDATE deliveries SET status = 'pending', next_attempt_at = now(), updated_at = now()
WHERE id = $1

-- name: cancel_pending_of_disabled
UPDATE deliveries SET status = 'cancelled', next_attempt_at = NULL, updated_at = now()
WHERE subscription_id = ANY($1::text[]) AND status = 'pending' AND NOT (id = ANY($2::text[]))

-- name: overdue
SELECT d.id, d.subscription_id, d.attempts, d.updated_at,
       e.id AS event_id, e.type, e.data, e.created_at
FROM deliveries d JOIN events e ON e.id = d.event_id
WHERE d.status = 'pending'
  AND COALESCE(d.next_attempt_at, d.created_at) < now() - make_interval(secs => $1)
ORDER BY COALESCE(d.next_attempt_at, d.created_at)
LIMIT $2
FOR UPDATE OF d SKIP LOCKED

-- name: handed_on
UPDATE deliveries SET next_attempt_at = now(), updated_at = now()
WHERE id = ANY($1::text[]) AND status = 'pending'

-- name: set_status
UPDATE deliveries SET status = $2, updated_at = now() WHERE id = ANY($1::text[])

-- Only rows still as `mark_*` left them: a sender may have settled one meanwhile. The
-- `= ANY` lets each partition's index find the rows, rather than a join reading them all.
-- name: restore_status
UPDATE deliveries d SET status = u.status, updated_at = now()
FROM unnest($1::text[], $2::text[]) AS u(id, status)
WHERE d.id = u.id AND d.id = ANY($1::text[]) AND d.status = 'pending'

-- name: recover_failed
UPDATE deliveries d SET status = 'pending', updated_at = now()
FROM events e
WHERE e.id = d.event_id AND d.subscription_id = $1 AND d.status = 'failed'
  AND d.created_at >= $2 AND ($3::text IS NULL OR e.tenant_id = $3)
RETURNING d.id, d.subscription_id, e.id AS event_id, e.type, e.data, e.created_at

-- deliveries is partitioned by event id (migration 0007): with it each row's update reads
-- one partition instead of probing all. A change made without it looks it up first.
-- name: event_ids
SELECT id, event_id FROM deliveries WHERE id = ANY($1::text[])

-- With a tenant scope, only deliveries to that tenant's subscriptions (see store.tenancy).
-- name: counts_by_event
SELECT d.event_id, d.status, count(*) AS n
FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id
WHERE d.event_id = ANY($1::text[]) AND ($2::text IS NULL OR s.tenant_id = $2)
GROUP BY d.event_id, d.status

-- name: of_event
SELECT id, subscription_id, status, attempts FROM deliveries WHERE event_id = $1 ORDER BY created_at, id

-- name: cancel_pending_of_subscription
UPDATE deliveries SET status = 'cancelled', updated_at = now() WHERE subscription_id = $1 AND status = 'pending'

-- name: insert_test_delivery
INSERT INTO deliveries (id, event_id, subscription_id) VALUES ($1, $2, $3)

-- name: get
SELECT {{columns}} {{from_by_id}} WHERE d.id = $1

-- name: list_for_subscription
SELECT {{columns}} FROM deliveries d JOIN events e ON e.id = d.event_id
WHERE d.subscription_id = $1
  AND ($2::text IS NULL OR d.status = $2)
  AND ($3::timestamptz IS NULL OR (d.created_at, d.id) < ($3, $4))
  AND ($6::text IS NULL OR e.tenant_id = $6)
ORDER BY d.created_at DESC, d.id DESC LIMIT $5

-- name: lock_for_retry
SELECT d.id, d.status, d.subscription_id, s.deleted_at,
       e.id AS event_id, e.type, e.data, e.created_at
{{from_by_id}}
JOIN subscriptions s ON s.id = d.subscription_id
WHERE d.id = $1 AND {{tenancy.delivery_in_scope scope=$2}}
FOR UPDATE OF d FOR SHARE OF s

-- Messages of one delivery can overtake each other (a redelivered older copy, a duplicate),
-- so a change `u` never rewrites a settled history `d`: `succeeded` is final, `failed` or
-- `cancelled` only replace `pending`, and a change that made no attempt (a delivery of a
-- batch marked as travelling on its own) only ever lands on `pending`: its copy may already
-- have been cancelled or failed. `next_status` in shared/stores/deliveries.py is the same
-- rule in Python, for changes merged in one batch; tests/integration/test_status_rule.py
-- holds the two to each other.
-- fragment: keep_status
(d.status = 'succeeded'
    OR (u.status IN ('failed', 'cancelled') AND d.status <> 'pending')
    OR (u.status = 'pending' AND u.attempts = 0 AND d.status <> 'pending'))

-- What the sender's attempts did to each delivery, one row per delivery: the status by the
-- rule above, attempts added up, the last answer kept. This is the statement that marks a
-- delivery succeeded (or failed, or cancelled). The event id names the row's partition.
-- name: apply_changes
UPDATE deliveries AS d SET
    status = CASE WHEN {{keep_status}} THEN d.status ELSE u.status END,
    attempts = d.attempts + u.attempts,
    last_status_code = CASE WHEN u.attempts > 0 THEN u.last_status_code
                            ELSE d.last_status_code END,
    last_error = CASE WHEN u.attempts > 0 THEN u.last_error ELSE d.last_error END,
    last_attempt_at = COALESCE(u.last_attempt_at, d.last_attempt_at),
    next_attempt_at = CASE WHEN {{keep_status}} THEN d.next_attempt_at
                           ELSE u.next_attempt_at END,
    updated_at = now()
FROM unnest($1::text[], $2::text[], $3::int[], $4::int[], $5::text[],
            $6::timestamptz[], $7::timestamptz[], $8::text[])
    AS u(id, status, attempts, last_status_code, last_error, last_attempt_at, next_attempt_at,
         event_id)
WHERE d.id = u.id AND d.event_id = u.event_id
RETURNING d.id

-- The deliveries of a redelivered batch message that nothing was done with yet: still
-- pending, no attempt recorded, not handed on as a message of their own.
-- name: not_started
SELECT id FROM deliveries WHERE id = ANY($1::text[])
  AND status = 'pending' AND attempts = 0 AND next_attempt_at IS NULL
