-- Step 1 of moving events, deliveries and attempts into daily partitions (issue 16): bound
-- the existing tables, so that 0007 can attach each whole as the partition holding every row
-- from before the change, without a scan under an exclusive lock.

-- The smallest id `shared.ids.new_id(prefix)` makes at `at` (48 bits of milliseconds, then
-- 80 bits of zeros, in the same base32): partition bounds in the ids' own order.
CREATE FUNCTION hookline_id_at(prefix text, at timestamptz) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
    alphabet constant text := '0123456789abcdefghjkmnpqrstvwxyz';
    value numeric := floor(extract(epoch FROM at) * 1000) * 2::numeric ^ 80;
    digits text := '';
BEGIN
    FOR i IN 1..26 LOOP
        digits := substr(alphabet, mod(value, 32)::int + 1, 1) || digits;
        value := div(value, 32);
    END LOOP;
    RETURN prefix || '_' || digits;
END $$;

-- Where the pre-partitioning tables end: midnight UTC two days ahead, so that writes of the
-- services still running meanwhile stay inside it; later if an id already lies beyond.
CREATE TABLE partitioning_cutover (
    one       boolean PRIMARY KEY DEFAULT true CHECK (one),
    legacy_until timestamptz NOT NULL
);
INSERT INTO partitioning_cutover (legacy_until)
SELECT date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' + interval '2 days';

DO $$
DECLARE
    until timestamptz := (SELECT legacy_until FROM partitioning_cutover);
    newest text := (SELECT max(id) FROM events);
BEGIN
    WHILE newest IS NOT NULL AND hookline_id_at('evt', until) <= newest LOOP
        IF until > now() + interval '100 years' THEN
            RAISE EXCEPTION 'event id % is not a time-ordered id; cannot partition', newest;
        END IF;
        until := until + interval '1 day';
    END LOOP;
    UPDATE partitioning_cutover SET legacy_until = until;
    -- NOT VALID: instant here; 0005 validates them without blocking writes.
    EXECUTE format('ALTER TABLE events ADD CONSTRAINT events_legacy_range'
                   ' CHECK (id < %L) NOT VALID', hookline_id_at('evt', until));
    EXECUTE format('ALTER TABLE deliveries ADD CONSTRAINT deliveries_legacy_range'
                   ' CHECK (event_id < %L) NOT VALID', hookline_id_at('evt', until));
    EXECUTE format('ALTER TABLE delivery_attempts ADD CONSTRAINT delivery_attempts_legacy_range'
                   ' CHECK (attempted_at < %L) NOT VALID', until);
END $$;
