"""Which tenant owns a delivery: what a portal token's reads and retries are checked against.

A delivery is a tenant's when both its subscription and its event are that tenant's (as
fanout made it). A subscription an operator moves to another tenant leaves its past
deliveries to neither: the tenant it left no longer sees them, not even in its own events'
summaries, and the tenant it joined neither reads (the attempts hold what the old owner's
endpoint answered) nor re-sends them (the old owner's events, to an endpoint it may have
changed). `DELIVERY_IN_SCOPE` is that rule in SQL, over `s` and `e`, with the scope as `$n`.
"""

from __future__ import annotations

import asyncpg

from shared.stores import connection

DELIVERY_IN_SCOPE = "(${n}::text IS NULL OR (s.tenant_id = ${n} AND e.tenant_id = ${n}))"

# Deleted subscriptions too: their deliveries stay readable by the tenant that owned them.
# NULL for a delivery whose subscription and event are of different tenants (see above).
_DELIVERY_TENANT = """
SELECT CASE WHEN s.tenant_id IS NOT DISTINCT FROM e.tenant_id THEN s.tenant_id END AS tenant_id
FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id
JOIN events e ON e.id = d.event_id
WHERE d.id = $1
"""


async def delivery_tenant(pool: asyncpg.Pool, delivery_id: str) -> tuple[bool, str | None]:
    """(whether the delivery exists, its tenant: None when its subscription's and its
    event's differ)."""
    async with connection(pool) as conn:
        row = await conn.fetchrow(_DELIVERY_TENANT, delivery_id)
    if row is None:
        return False, None
    return True, row["tenant_id"]


_SUBSCRIPTION_TENANTS = "SELECT id, tenant_id FROM subscriptions WHERE id = ANY($1::text[])"


async def subscription_tenants(
    pool: asyncpg.Pool, subscription_ids: list[str]
) -> dict[str, str | None]:
    """The tenant of each of these subscriptions (deleted ones too), by id."""
    async with connection(pool) as conn:
        rows = await conn.fetch(_SUBSCRIPTION_TENANTS, subscription_ids)
    return {r["id"]: r["tenant_id"] for r in rows}
