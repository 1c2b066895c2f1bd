-- subscriptions: who receives what. The API owns create/update/delete; the sender owns
-- failing_since, parked_until and auto-disable; fanout and the sender read routes.

-- fragment: in_scope
({scope}::text IS NULL OR tenant_id = {scope})

-- Two list statements, not one with `($4 IS NULL OR tenant_id = $4)`: the generic plan of
-- that one could not use an index on the tenant, and a tenant's page would scan every id
-- (issue 17). `id > $1` (never NULL: '' sorts first) keeps the cursor an index bound.
-- fragment: list_filters
  AND id > $1
  AND ($2::text[] IS NULL OR event_types && $2)
  AND ($3::text IS NULL OR status = $3)

-- What the API answers with.
-- fragment: columns
id, url, event_types, status, disabled_reason, description, tenant_id, secret,
previous_secret_expires_at, created_at, updated_at

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

-- One statement for every key of a batch. Each key's candidate patterns are gathered into
-- one array, so a tenanted key costs one probe of the index on (tenant_id, id), to the
-- tenant's few rows, whatever the number of patterns; `&&` keeps the subscriptions listing
-- any of them (one row each, even when one lists `invoice.*` and `invoice.paid`). Without
-- a tenant, the GIN index on event_types of the untenanted rows answers `&&`. The two
-- halves never share a row (a key has a tenant or not), hence UNION ALL, no de-duplication.
-- name: routes
WITH k AS (
    SELECT u.i, u.tenant, array_agg(u.pattern) AS patterns
    FROM unnest($1::int[], $2::text[], $3::text[]) AS u(i, tenant, pattern)
    GROUP BY u.i, u.tenant
)
SELECT k.i, s.id, s.parked_until
FROM k JOIN subscriptions AS s ON s.tenant_id = k.tenant
WHERE k.tenant IS NOT NULL AND s.event_types && k.patterns
  AND s.status = 'enabled' AND s.deleted_at IS NULL
UNION ALL
SELECT k.i, s.id, s.parked_until
FROM k JOIN subscriptions AS s ON s.event_types && k.patterns
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

-- name: insert
INSERT INTO subscriptions (id, url, event_types, description, tenant_id, secret)
VALUES ($1, $2, $3, $4, $5, $6) RETURNING {{columns}}

-- name: get
SELECT {{columns}} FROM subscriptions WHERE id = $1 AND deleted_at IS NULL

-- name: list
SELECT {{columns}} FROM subscriptions
WHERE deleted_at IS NULL 
{{list_filters}}

ORDER BY id LIMIT $4

-- name: list_of_tenant
SELECT {{columns}} FROM subscriptions
WHERE deleted_at IS NULL AND tenant_id = $5 
{{list_filters}}

ORDER BY id LIMIT $4

-- name: rotate_secret
UPDATE subscriptions
SET previous_secret = secret, previous_secret_expires_at = now() + interval '24 hours',
    secret = $2, updated_at = now()
WHERE id = $1 AND deleted_at IS NULL AND {{in_scope scope=$3}} RETURNING {{columns}}

-- name: delete
UPDATE subscriptions SET deleted_at = now(), updated_at = now() WHERE id = $1 AND deleted_at IS NULL AND {{in_scope scope=$2}}

-- $3 names the columns a request changes ($4-$7 hold their values); $8 is the status asked
-- for, NULL to leave it. Enabling clears disabled_reason and failing_since; disabling keeps
-- the reason of one already disabled (`gone` says more than `manual`). SET reads the row as
-- it was before the update.
-- name: update
UPDATE subscriptions SET
    url = CASE WHEN 'url' = ANY($3::text[]) THEN $4::text ELSE url END,
    event_types = CASE WHEN 'event_types' = ANY($3::text[]) THEN $5::text[] ELSE event_types END,
    description = CASE WHEN 'description' = ANY($3::text[]) THEN $6::text ELSE description END,
    tenant_id = CASE WHEN 'tenant_id' = ANY($3::text[]) THEN $7::text ELSE tenant_id END,
    status = COALESCE($8::text, status),
    disabled_reason = CASE WHEN $8::text = 'enabled' THEN NULL
                           WHEN $8::text = 'disabled' AND status = 'enabled' THEN 'manual'
                           ELSE disabled_reason END,
    failing_since = CASE WHEN $8::text = 'enabled' THEN NULL ELSE failing_since END,
    updated_at = now()
WHERE id = $1 AND deleted_at IS NULL AND {{in_scope scope=$2}}
RETURNING {{columns}}

-- What the sender needs to sign and send (the model of shared/subscriptions.py), never the
-- API's view.
-- fragment: target_columns
id, url, event_types, status, tenant_id, secret, previous_secret,
previous_secret_expires_at, deleted_at, parked_until

-- name: targets_all
SELECT {{target_columns}} FROM subscriptions WHERE deleted_at IS NULL

-- name: target
SELECT {{target_columns}} FROM subscriptions WHERE id = $1 AND deleted_at IS NULL

-- name: targets
SELECT {{target_columns}} FROM subscriptions WHERE id = ANY($1::text[]) AND deleted_at IS NULL

-- One stored encrypted secret, to check at start that HOOKLINE_SECRET_KEY opens it.
-- name: one_encrypted_secret
SELECT secret FROM subscriptions WHERE deleted_at IS NULL AND secret LIKE $1 LIMIT 1
