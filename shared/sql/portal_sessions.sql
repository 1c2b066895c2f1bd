-- portal_sessions: portal tokens, stored as SHA-256 of the token.

-- name: insert
INSERT INTO portal_sessions (id, token_hash, tenant_id, created_by, expires_at)
VALUES ($1, $2, $3, $4, now() + $5::float8 * interval '1 second')
RETURNING id, tenant_id, created_at, expires_at

-- now() of the database, not of the replica, decides expiry: replicas whose clocks drift
-- still agree on when a token stops working.
-- name: live
SELECT id, tenant_id, expires_at FROM portal_sessions
WHERE token_hash = $1 AND revoked_at IS NULL AND expires_at > now()

-- Sessions are kept a week past their end (for whoever reads the table after an incident),
-- then removed whenever a new one is made, so the table stays small without a job of its own.
-- name: prune
DELETE FROM portal_sessions WHERE expires_at < now() - interval '7 days'

-- name: revoke
UPDATE portal_sessions SET revoked_at = COALESCE(revoked_at, now())
WHERE id = $1 RETURNING tenant_id
