-- The transactional outbox, in the producer's own database (hookline-client, issue 14).
-- An event recorded here inside the producer's transaction exists exactly when that
-- transaction commits; `hookline-outbox relay` then hands it to Hookline.

CREATE TABLE IF NOT EXISTS hookline_outbox (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Unique at insert (a random UUID unless the producer gives one): the relay resends a
    -- row with the same key after a crash, and Hookline's ingest delivers it once.
    idempotency_key text NOT NULL,
    type text NOT NULL,
    data jsonb NOT NULL,
    tenant_id text,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    published_at timestamptz,
    CONSTRAINT hookline_outbox_type_valid
        CHECK (type ~ '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*){1,3}$'),
    CONSTRAINT hookline_outbox_data_object CHECK (jsonb_typeof(data) = 'object'),
    CONSTRAINT hookline_outbox_key_valid CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    CONSTRAINT hookline_outbox_tenant_valid
        CHECK (tenant_id IS NULL OR tenant_id ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$'),
    CONSTRAINT hookline_outbox_data_size CHECK (octet_length(data::text) <= 262144)
);

CREATE INDEX IF NOT EXISTS hookline_outbox_pending
    ON hookline_outbox (seq) WHERE published_at IS NULL;
CREATE INDEX IF NOT EXISTS hookline_outbox_published
    ON hookline_outbox (published_at) WHERE published_at IS NOT NULL;

-- Record an event in the caller's transaction; returns its idempotency key. The NOTIFY is
-- delivered on commit only, and not at all on rollback, so the relay wakes for committed
-- rows alone.
CREATE OR REPLACE FUNCTION hookline_outbox_notify(
    p_type text, p_data jsonb, p_id text DEFAULT NULL, p_tenant_id text DEFAULT NULL
) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    key text := coalesce(p_id, 'hl_' || replace(gen_random_uuid()::text, '-', ''));
BEGIN
    INSERT INTO hookline_outbox (idempotency_key, type, data, tenant_id)
    VALUES (key, p_type, coalesce(p_data, '{}'::jsonb), p_tenant_id);
    PERFORM pg_notify('hookline_outbox', '');
    RETURN key;
END
$$;
