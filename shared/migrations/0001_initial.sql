-- Hookline's first schema: subscriptions, the event-type catalogue, events, deliveries, attempts.

CREATE TABLE subscriptions (
    id                          text PRIMARY KEY,
    url                         text NOT NULL,
    event_types                 text[] NOT NULL,
    status                      text NOT NULL DEFAULT 'enabled'
                                CHECK (status IN ('enabled', 'disabled')),
    disabled_reason             text CHECK (disabled_reason IN ('manual', 'gone', 'failing')),
    description                 text NOT NULL DEFAULT '',
    tenant_id                   text,
    -- Plain `whsec_…`, or `enc:v1:…` when HOOKLINE_SECRET_KEY encrypts secrets at rest.
    secret                      text NOT NULL,
    previous_secret             text,
    previous_secret_expires_at  timestamptz,
    -- For auto-disable: the last success, and the first failure since then.
    last_success_at             timestamptz,
    failing_since               timestamptz,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now(),
    -- Deleted subscriptions stay, hidden, so their delivery history keeps its meaning.
    deleted_at                  timestamptz
);
CREATE INDEX subscriptions_live ON subscriptions (id) WHERE deleted_at IS NULL;
CREATE INDEX subscriptions_tenant ON subscriptions (tenant_id) WHERE deleted_at IS NULL;

CREATE TABLE event_types (
    name        text PRIMARY KEY,
    description text NOT NULL DEFAULT '',
    schema      jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE events (
    id               text PRIMARY KEY,
    type             text NOT NULL,
    data             jsonb NOT NULL,
    tenant_id        text,
    idempotency_key  text,
    source           text NOT NULL CHECK (source IN ('amqp', 'http')),
    created_at       timestamptz NOT NULL DEFAULT now(),
    -- Set once the event was confirmed on {ns}.events; a duplicate of an event never
    -- dispatched is dispatched again rather than dropped.
    dispatched_at    timestamptz
);
CREATE UNIQUE INDEX events_idempotency_key ON events (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX events_created ON events (created_at);

CREATE TABLE deliveries (
    id               text PRIMARY KEY,
    event_id         text NOT NULL REFERENCES events (id),
    subscription_id  text NOT NULL REFERENCES subscriptions (id),
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'succeeded', 'failed', 'cancelled')),
    attempts         integer NOT NULL DEFAULT 0,
    last_status_code integer,
    last_error       text,
    last_attempt_at  timestamptz,
    next_attempt_at  timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX deliveries_subscription ON deliveries (subscription_id, created_at DESC, id DESC);
CREATE INDEX deliveries_event ON deliveries (event_id);
CREATE INDEX deliveries_failed ON deliveries (subscription_id, status, created_at)
    WHERE status = 'failed';

CREATE TABLE delivery_attempts (
    id             bigserial PRIMARY KEY,
    delivery_id    text NOT NULL REFERENCES deliveries (id),
    attempt        integer NOT NULL,
    attempted_at   timestamptz NOT NULL,
    status_code    integer,
    duration_ms    integer NOT NULL,
    outcome        text NOT NULL CHECK (outcome IN ('success', 'retry', 'gone', 'failed', 'refused')),
    error_kind     text,
    error          text,
    response_body  text
);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id, id);

-- Every change to a subscription tells fanout and sender, whose caches reload that row.
CREATE FUNCTION hookline_notify_subscription() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('hookline_subscriptions', COALESCE(NEW.id, OLD.id));
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER subscriptions_notify
    AFTER INSERT OR UPDATE OR DELETE ON subscriptions
    FOR EACH ROW EXECUTE FUNCTION hookline_notify_subscription();

CREATE FUNCTION hookline_notify_event_type() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('hookline_event_types', COALESCE(NEW.name, OLD.name));
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER event_types_notify
    AFTER INSERT OR UPDATE OR DELETE ON event_types
    FOR EACH ROW EXECUTE FUNCTION hookline_notify_event_type();
