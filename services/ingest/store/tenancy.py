"""Which tenant owns a delivery: what a portal token's reads and retries are checked against.

A delivery is its subscription's tenant's, whatever the event's tenant: a subscription an
operator moved to another tenant takes its deliveries along, and the tenant it left no
longer sees them, not even in its own events' summaries.
"""

from __future__ import annotations

import asyncpg

from services.ingest.store import connection

# Deleted subscriptions too: their deliveries stay readable by the tenant that owned them.
_DELIVERY_TENANT = """
SELECT s.tenant_id FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id
WHERE d.id = $1
"""


async def delivery_tenant(pool: asyncpg.Pool, delivery_id: str) -> tuple[bool, str | None]:
    """(whether the delivery exists, the tenant of its subscription)."""
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
