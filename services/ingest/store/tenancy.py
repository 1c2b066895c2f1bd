"""Which tenant owns a delivery: what a portal token's reads and retries are checked against."""

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
