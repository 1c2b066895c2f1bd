"""The events list (GET /v1/events): newest first, with how each event's deliveries stand."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from shared.stores import connection

_LIST = """
SELECT id, type, data, tenant_id, idempotency_key, source, created_at, dispatched_at
FROM events
WHERE ($1::text IS NULL OR type = $1)
  AND ($2::text IS NULL OR tenant_id = $2)
  AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4))
ORDER BY created_at DESC, id DESC LIMIT $5
"""
# With a tenant scope, only deliveries to that tenant's subscriptions (see store.tenancy).
_COUNTS = """
SELECT d.event_id, d.status, count(*) AS n
FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id
WHERE d.event_id = ANY($1::text[]) AND ($2::text IS NULL OR s.tenant_id = $2)
GROUP BY d.event_id, d.status
"""


async def list_page(
    pool: asyncpg.Pool,
    *,
    event_type: str | None,
    tenant_id: str | None,
    before: tuple[datetime, str] | None,
    limit: int,
    tenant_scope: str | None = None,
) -> tuple[list[asyncpg.Record], dict[str, dict[str, int]]]:
    """Events older than `before` (created_at, id), newest first; and per event id, how many
    of its deliveries (to subscriptions of `tenant_scope`, unless None) are in each status."""
    created, last_id = before if before else (None, None)
    async with connection(pool) as conn:
        rows = list(await conn.fetch(_LIST, event_type, tenant_id, created, last_id, limit))
        counts: dict[str, dict[str, int]] = {}
        if rows:
            for r in await conn.fetch(_COUNTS, [row["id"] for row in rows], tenant_scope):
                counts.setdefault(r["event_id"], {})[r["status"]] = r["n"]
    return rows, counts
