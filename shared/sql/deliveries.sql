-- deliveries: one row per (event, subscription) match, partitioned by event id (0007).
-- Written by fanout (insert_pending), the sender (the outcome of each attempt) and the API
-- (retries, recoveries); every statement that reads or writes it is here.

-- The id is derived from (event, subscription), so a redelivered event finds its rows there
-- already and adds none.
-- name: insert_pending
INSERT INTO deliveries (id, event_id, subscription_id)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
ON CONFLICT DO NOTHING

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
