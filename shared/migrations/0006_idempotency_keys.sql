-- Idempotency keys per tenant, remembered for HOOKLINE_IDEMPOTENCY_WINDOW (issue 16).
-- A table of their own: `events` becomes partitioned by id (0007), and a partitioned table
-- cannot hold a unique index without its partition key. `scope` is the event's tenant_id,
-- or '' for an event without one (a tenant_id is never empty, so '' is no tenant's scope).
-- `accepted_at` is when the key was first accepted: the window runs from it, and a copy
-- arriving later never moves it.
CREATE TABLE idempotency_keys (
    scope        text NOT NULL,
    key          text NOT NULL,
    event_id     text NOT NULL,
    accepted_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_accepted ON idempotency_keys (accepted_at);

-- Keys were unique across tenants until now, so the copy cannot collide; those already past
-- the window are purged by ingest on its first pass.
INSERT INTO idempotency_keys (scope, key, event_id, accepted_at)
SELECT COALESCE(tenant_id, ''), idempotency_key, id, created_at
FROM events WHERE idempotency_key IS NOT NULL;

DROP INDEX events_idempotency_key;
