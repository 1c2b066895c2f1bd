-- Issue 17: indexes for a million subscriptions and millions of deliveries. Plain CREATE
-- INDEX (no CONCURRENTLY): it must also work on a partitioned parent.

-- A tenant's live subscriptions in id order: fanout's routes of a tenant's event, and
-- `GET /v1/subscriptions?tenant_id=` (ORDER BY id, paged by id) without scanning others.
-- Supersedes `subscriptions_tenant` (tenant_id alone).
CREATE INDEX IF NOT EXISTS subscriptions_tenant_id ON subscriptions (tenant_id, id)
    WHERE deleted_at IS NULL;
DROP INDEX IF EXISTS subscriptions_tenant;

-- Fanout's routes of an event without a tenant: the untenanted live subscriptions listing
-- one of the event's candidate patterns (`event_types @> ARRAY[pattern]`).
CREATE INDEX IF NOT EXISTS subscriptions_untenanted_types ON subscriptions USING gin (event_types)
    WHERE tenant_id IS NULL AND deleted_at IS NULL;
