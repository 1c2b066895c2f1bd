"""The events list (GET /v1/events): newest first, with how each event's deliveries stand."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from shared.sql import queries
from shared.stores import connection, deliveries

_EVENTS_SQL = queries("events").require("list_page")


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
        rows = list(
            await conn.fetch(
                _EVENTS_SQL["list_page"], event_type, tenant_id, created, last_id, limit
            )
        )
        counts = (
            await deliveries.counts_by_event(conn, [row["id"] for row in rows], tenant_scope)
            if rows
            else {}
        )
    return rows, counts
