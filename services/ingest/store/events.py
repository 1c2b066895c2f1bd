"""Stored events: insert once per idempotency key, mark dispatched in batches, read back."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from services.ingest.store import connection
from shared.models import EventIn

_COLUMNS = "id, type, data, tenant_id, idempotency_key, source, created_at, dispatched_at"

_INSERT = f"""
INSERT INTO events (id, type, data, tenant_id, idempotency_key, source)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING {_COLUMNS}
"""
_BY_KEY = f"SELECT {_COLUMNS} FROM events WHERE idempotency_key = $1"
_BY_ID = f"SELECT {_COLUMNS} FROM events WHERE id = $1"
_MARK_DISPATCHED = (
    "UPDATE events SET dispatched_at = now() WHERE id = ANY($1::text[]) AND dispatched_at IS NULL"
)
_DELIVERIES = (
    "SELECT id, subscription_id, status, attempts FROM deliveries"
    " WHERE event_id = $1 ORDER BY created_at, id"
)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    id: str
    type: str
    data: dict[str, Any]
    tenant_id: str | None
    idempotency_key: str | None
    source: str
    created_at: datetime
    dispatched_at: datetime | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> StoredEvent:
        return cls(**dict(row))


async def insert(
    pool: asyncpg.Pool, event_id: str, event: EventIn, source: str
) -> tuple[StoredEvent, bool]:
    """Store `event`; (the stored event, True) or, when its key was seen, (the first, False)."""
    async with connection(pool) as conn:
        row = await conn.fetchrow(
            _INSERT, event_id, event.type, event.data, event.tenant_id, event.id, source
        )
        if row is not None:
            return StoredEvent.from_row(row), True
        first = await conn.fetchrow(_BY_KEY, event.id)
    # The key's row cannot vanish (events are never deleted), so a conflict implies a row.
    assert first is not None
    return StoredEvent.from_row(first), False


async def mark_dispatched(pool: asyncpg.Pool, event_ids: list[str]) -> None:
    """Record that these events were confirmed on `{ns}.events` (one query for all)."""
    async with connection(pool) as conn:
        await conn.execute(_MARK_DISPATCHED, event_ids)


async def get(pool: asyncpg.Pool, event_id: str) -> tuple[StoredEvent, list[asyncpg.Record]] | None:
    """An event and its deliveries (id, subscription_id, status, attempts), or None."""
    async with connection(pool) as conn:
        row = await conn.fetchrow(_BY_ID, event_id)
        if row is None:
            return None
        deliveries = await conn.fetch(_DELIVERIES, event_id)
    return StoredEvent.from_row(row), list(deliveries)
