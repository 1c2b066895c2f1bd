"""Which tenant owns a delivery: what a portal token's reads and retries are checked against.

A delivery is a tenant's when both its subscription and its event are that tenant's (as
fanout made it). A subscription an operator moves to another tenant leaves its past
deliveries to neither: the tenant it left no longer sees them, not even in its own events'
summaries, and the tenant it joined neither reads (the attempts hold what the old owner's
endpoint answered) nor re-sends them (the old owner's events, to an endpoint it may have
changed). `shared/sql/tenancy.sql` writes that rule once, as the fragment `delivery_in_scope`.
"""

from __future__ import annotations

import asyncpg

from shared.sql import queries
from shared.stores import connection

_TENANCY_SQL = queries("tenancy").require("delivery_tenant")


async def delivery_tenant(pool: asyncpg.Pool, delivery_id: str) -> tuple[bool, str | None]:
    """(whether the delivery exists, its tenant: None when its subscription's and its
    event's differ)."""
    async with connection(pool) as conn:
        row = await conn.fetchrow(_TENANCY_SQL["delivery_tenant"], delivery_id)
    if row is None:
        return False, None
    return True, row["tenant_id"]
