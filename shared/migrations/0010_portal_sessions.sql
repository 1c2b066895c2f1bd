-- Portal sessions (issue 13): short-lived bearer tokens scoped to one tenant. Only a hash of
-- each token is stored, so a database dump lets nobody in; every ingest replica checks a
-- token here, so one created or revoked on one replica holds on all of them at once.
CREATE TABLE portal_sessions (
    id          text PRIMARY KEY,
    token_hash  bytea NOT NULL UNIQUE,
    tenant_id   text NOT NULL,
    -- The fingerprint of the operator token that created it (never the token).
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz
);
CREATE INDEX portal_sessions_expires ON portal_sessions (expires_at);
-- The events list (GET /v1/events) of one tenant, newest first.
CREATE INDEX events_tenant_created ON events (tenant_id, created_at DESC, id DESC);
