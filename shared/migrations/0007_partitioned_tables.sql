-- Step 4 of partitioning (issue 16): events, deliveries and delivery_attempts become tables
-- partitioned by day, under the same names and columns, so every query reads as before.
--   events             RANGE (id)            ids grow with time (shared.ids), so a lookup by
--   deliveries         RANGE (event_id)      id is pruned to one partition, and a delivery
--                                            lies in the partition of its event's day;
--   delivery_attempts  RANGE (attempted_at)  an attempt carries no event id.
-- Retention (ingest) drops whole partitions. The existing tables become the partitions
-- holding every row from before (`*_legacy`, up to partitioning_cutover.legacy_until), by a
-- metadata change only: 0005 proved their bounds and built their keys. On a database still
-- empty they are dropped instead, and the daily partitions start yesterday.

LOCK TABLE events, deliveries, delivery_attempts IN ACCESS EXCLUSIVE MODE;

ALTER TABLE events RENAME TO events_legacy;
ALTER INDEX events_pkey RENAME TO events_legacy_pkey;
ALTER INDEX events_created RENAME TO events_created_legacy;
ALTER TABLE deliveries RENAME TO deliveries_legacy;
ALTER INDEX deliveries_subscription RENAME TO deliveries_subscription_legacy;
ALTER INDEX deliveries_event RENAME TO deliveries_event_legacy;
ALTER INDEX deliveries_failed RENAME TO deliveries_failed_legacy;
ALTER INDEX deliveries_id_event RENAME TO deliveries_id_event_legacy;
ALTER TABLE delivery_attempts RENAME TO delivery_attempts_legacy;
ALTER INDEX delivery_attempts_delivery RENAME TO delivery_attempts_delivery_legacy;
ALTER INDEX delivery_attempts_id_attempted RENAME TO delivery_attempts_id_attempted_legacy;
-- Partitions are dropped one table at a time, so no foreign key may tie them to each other
-- (the trigger deliveries_name_events below checks new deliveries instead).
ALTER TABLE deliveries_legacy DROP CONSTRAINT deliveries_event_id_fkey;
ALTER TABLE delivery_attempts_legacy DROP CONSTRAINT delivery_attempts_delivery_id_fkey;
-- The parents' unique keys include the partition key: 0005's unique indexes take over.
ALTER TABLE deliveries_legacy DROP CONSTRAINT deliveries_pkey;
ALTER TABLE delivery_attempts_legacy DROP CONSTRAINT delivery_attempts_pkey;

CREATE TABLE events (
    id                   text NOT NULL,
    type                 text NOT NULL,
    data                 jsonb NOT NULL,
    tenant_id            text,
    idempotency_key      text,
    source               text NOT NULL
                         CONSTRAINT events_source_check CHECK (source IN ('amqp', 'http')),
    created_at           timestamptz NOT NULL DEFAULT now(),
    dispatched_at        timestamptz,
    dispatch_claimed_at  timestamptz,
    PRIMARY KEY (id)
) PARTITION BY RANGE (id);

CREATE TABLE deliveries (
    id               text NOT NULL,
    event_id         text NOT NULL,
    subscription_id  text NOT NULL
                     CONSTRAINT deliveries_subscription_id_fkey REFERENCES subscriptions (id),
    status           text NOT NULL DEFAULT 'pending'
                     CONSTRAINT deliveries_status_check CHECK (status IN ('pending', 'succeeded', 'failed', 'cancelled')),
    attempts         integer NOT NULL DEFAULT 0,
    last_status_code integer,
    last_error       text,
    last_attempt_at  timestamptz,
    next_attempt_at  timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
) PARTITION BY RANGE (event_id);

CREATE TABLE delivery_attempts (
    id             bigint NOT NULL DEFAULT nextval('delivery_attempts_id_seq'),
    delivery_id    text NOT NULL,
    attempt        integer NOT NULL,
    attempted_at   timestamptz NOT NULL,
    status_code    integer,
    duration_ms    integer NOT NULL,
    outcome        text NOT NULL CONSTRAINT delivery_attempts_outcome_check
                   CHECK (outcome IN ('success', 'retry', 'gone', 'failed', 'refused')),
    error_kind     text,
    error          text,
    response_body  text
) PARTITION BY RANGE (attempted_at);
-- Else dropping the legacy partition would drop the sequence with it.
ALTER SEQUENCE delivery_attempts_id_seq OWNED BY delivery_attempts.id;

-- NULL: no legacy partitions (the database was empty).
ALTER TABLE partitioning_cutover ALTER COLUMN legacy_until DROP NOT NULL;

DO $$
DECLARE
    until timestamptz := (SELECT legacy_until FROM partitioning_cutover);
    bound text := hookline_id_at('evt', until);
BEGIN
    IF EXISTS (SELECT 1 FROM events_legacy) OR EXISTS (SELECT 1 FROM deliveries_legacy)
       OR EXISTS (SELECT 1 FROM delivery_attempts_legacy) THEN
        EXECUTE format('ALTER TABLE events ATTACH PARTITION events_legacy'
                       ' FOR VALUES FROM (MINVALUE) TO (%L)', bound);
        EXECUTE format('ALTER TABLE deliveries ATTACH PARTITION deliveries_legacy'
                       ' FOR VALUES FROM (MINVALUE) TO (%L)', bound);
        EXECUTE format('ALTER TABLE delivery_attempts ATTACH PARTITION delivery_attempts_legacy'
                       ' FOR VALUES FROM (MINVALUE) TO (%L)', until);
    ELSE
        DROP TABLE delivery_attempts_legacy, deliveries_legacy, events_legacy;
        UPDATE partitioning_cutover SET legacy_until = NULL;
    END IF;
END $$;
-- On the parents: each attaches the legacy partition's equal index instead of building one,
-- and every partition created later gets its own.
-- Unique indexes, not primary keys: a primary key would build a new index on the legacy
-- partitions here, under the lock. A delivery id alone is unique too (derived from the
-- event and subscription), and `ON CONFLICT DO NOTHING` needs no named key.
CREATE UNIQUE INDEX deliveries_id_event ON deliveries (id, event_id);
CREATE UNIQUE INDEX delivery_attempts_id_attempted ON delivery_attempts (id, attempted_at);
CREATE INDEX events_created ON events (created_at);
CREATE INDEX deliveries_subscription ON deliveries (subscription_id, created_at DESC, id DESC);
CREATE INDEX deliveries_event ON deliveries (event_id);
CREATE INDEX deliveries_failed ON deliveries (subscription_id, status, created_at)
    WHERE status = 'failed';
CREATE INDEX deliveries_pending ON deliveries (event_id) WHERE status = 'pending';
CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id, id);

-- What the foreign key deliveries.event_id -> events.id did: a delivery names a stored event
-- (fanout rejects an event it cannot find as `not_stored`). A foreign key between the
-- partitioned tables would make every drop of an events partition check all deliveries;
-- this checks each INSERT statement's new rows at once, through the events' key.
CREATE FUNCTION hookline_deliveries_name_events() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    missing text;
BEGIN
    -- One lookup by id per event, each pruned to its partition: OFFSET 0 keeps the planner
    -- from hashing every event into an anti-join instead.
    SELECT n.event_id INTO missing FROM (SELECT DISTINCT event_id FROM new_deliveries) n
    WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.id = n.event_id OFFSET 0) LIMIT 1;
    IF missing IS NOT NULL THEN
        RAISE foreign_key_violation USING
            MESSAGE = format('a delivery names event %s, which is not stored', missing);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER deliveries_name_events AFTER INSERT ON deliveries
    REFERENCING NEW TABLE AS new_deliveries
    FOR EACH STATEMENT EXECUTE FUNCTION hookline_deliveries_name_events();

-- Rows outside every daily range (an id not made by shared.ids, a clock far ahead) land here
-- rather than failing their write; they stay until removed by hand.
CREATE TABLE events_default PARTITION OF events DEFAULT;
CREATE TABLE deliveries_default PARTITION OF deliveries DEFAULT;
CREATE TABLE delivery_attempts_default PARTITION OF delivery_attempts DEFAULT;

-- Creates the three partitions of each day from `first_day` to `last_day` (UTC) that do not
-- exist yet, skipping days the legacy partitions cover; returns how many it created.
-- Ingest runs it ahead of time (services/ingest/retention.py).
CREATE FUNCTION hookline_ensure_partitions(first_day date, last_day date) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    legacy_until timestamptz := (SELECT c.legacy_until FROM partitioning_cutover c);
    day date;
    lo timestamptz;
    hi timestamptz;
    suffix text;
    made integer := 0;
BEGIN
    FOR day IN SELECT d::date FROM generate_series(first_day, last_day, interval '1 day') d LOOP
        lo := day::timestamp AT TIME ZONE 'UTC';
        hi := lo + interval '1 day';
        CONTINUE WHEN legacy_until IS NOT NULL AND hi <= legacy_until;
        suffix := '_p' || to_char(day, 'YYYYMMDD');
        IF to_regclass('events' || suffix) IS NULL THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF events FOR VALUES FROM (%L) TO (%L)',
                           'events' || suffix, hookline_id_at('evt', lo), hookline_id_at('evt', hi));
            made := made + 1;
        END IF;
        IF to_regclass('deliveries' || suffix) IS NULL THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF deliveries FOR VALUES FROM (%L) TO (%L)',
                           'deliveries' || suffix, hookline_id_at('evt', lo),
                           hookline_id_at('evt', hi));
            made := made + 1;
        END IF;
        IF to_regclass('delivery_attempts' || suffix) IS NULL THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF delivery_attempts'
                           ' FOR VALUES FROM (%L) TO (%L)', 'delivery_attempts' || suffix, lo, hi);
            made := made + 1;
        END IF;
    END LOOP;
    RETURN made;
END $$;

SELECT hookline_ensure_partitions((now() AT TIME ZONE 'UTC')::date - 1,
                                  (now() AT TIME ZONE 'UTC')::date + 7);
