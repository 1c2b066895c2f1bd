-- subscriptions: who receives what. The API owns create/update/delete; the sender owns
-- failing_since, parked_until and auto-disable; fanout and the sender read routes.

-- name: secrets_for_update
SELECT id, secret, previous_secret FROM subscriptions ORDER BY id FOR UPDATE

-- name: set_secrets
UPDATE subscriptions SET secret = $2, previous_secret = $3 WHERE id = $1

-- name: disable
UPDATE subscriptions SET status = 'disabled', disabled_reason = $2, updated_at = now()
WHERE id = ANY($1::text[]) AND status = 'enabled' AND deleted_at IS NULL
RETURNING id

-- name: failing_too_long
SELECT s.id FROM subscriptions AS s
WHERE s.status = 'enabled' AND s.deleted_at IS NULL
  AND s.failing_since IS NOT NULL AND s.failing_since <= now() - $1::interval
  AND EXISTS (
      SELECT 1 FROM deliveries AS d JOIN delivery_attempts AS a ON a.delivery_id = d.id
      WHERE d.subscription_id = s.id
        AND a.attempted_at >= s.failing_since + $1::interval
        AND a.outcome <> 'success')

-- name: park
UPDATE subscriptions SET parked_until = now() + make_interval(secs => $2) WHERE id = $1

-- name: unpark
UPDATE subscriptions SET parked_until = NULL WHERE id = $1 AND parked_until IS NOT NULL

-- name: tenants_of
SELECT DISTINCT tenant_id FROM subscriptions WHERE id = ANY($1::text[])

-- One statement for every key of a batch: each (key, candidate pattern) pair finds the live
-- enabled subscriptions of that tenant listing that pattern. With a tenant, the index on
-- (tenant_id, id) narrows to the tenant's few rows; without, the GIN index on event_types of
-- the untenanted rows answers `@>`. UNION: a subscription listing `invoice.*` and
-- `invoice.paid` is one route.
-- name: routes
SELECT k.i, s.id, s.parked_until
FROM unnest($1::int[], $2::text[], $3::text[]) AS k(i, tenant, pattern)
JOIN subscriptions AS s ON s.tenant_id = k.tenant
WHERE k.tenant IS NOT NULL AND s.event_types @> ARRAY[k.pattern]
  AND s.status = 'enabled' AND s.deleted_at IS NULL
UNION
SELECT k.i, s.id, s.parked_until
FROM unnest($1::int[], $2::text[], $3::text[]) AS k(i, tenant, pattern)
JOIN subscriptions AS s ON s.event_types @> ARRAY[k.pattern]
WHERE k.tenant IS NULL AND s.tenant_id IS NULL
  AND s.status = 'enabled' AND s.deleted_at IS NULL

-- Held (FOR SHARE) until the transaction ends: the subscription cannot move to another
-- tenant, or be deleted, between this check and the writes that follow it.
-- name: lock_in_scope
SELECT tenant_id FROM subscriptions
WHERE id = $1 AND deleted_at IS NULL AND ($2::text IS NULL OR tenant_id = $2) FOR SHARE

-- name: clear_failing
UPDATE subscriptions SET failing_since = NULL
WHERE id = ANY($1::text[]) AND failing_since IS NOT NULL

-- name: set_failing
UPDATE subscriptions AS s SET failing_since = u.since
FROM unnest($1::text[], $2::timestamptz[], $3::bool[]) AS u(id, since, after_success)
WHERE s.id = u.id AND (s.failing_since IS NULL OR u.after_success)

-- name: tenants
SELECT id, tenant_id FROM subscriptions WHERE id = ANY($1::text[])
