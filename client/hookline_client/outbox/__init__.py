"""The transactional outbox for Postgres producers (the `outbox` extra).

An event is recorded in the producer's own database, inside the producer's own transaction,
by `SELECT hookline_outbox_notify(type, data, id, tenant_id)` (any driver or ORM) or by
`await outbox.notify(conn, ...)` (asyncpg). It exists exactly when that transaction
commits; `hookline-outbox relay` then publishes it to Hookline with confirms.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import asyncpg

from hookline_client.envelope import MAX_PAYLOAD_BYTES, envelope
from hookline_client.outbox.schema import migrate
from hookline_client.outbox.sql import queries

__all__ = ["migrate", "notify"]


async def notify(
    conn: asyncpg.Connection,
    type: str,
    data: Mapping[str, Any] | None = None,
    *,
    id: str | None = None,
    tenant_id: str | None = None,
) -> str:
    """Record an event in the outbox within `conn`'s current transaction; returns its key.

    Call it inside `async with conn.transaction():` next to the writes the event announces:
    a rollback removes it with them. Raises ValueError (before any SQL) for an event
    Hookline's ingest would refuse.
    """
    checked = envelope(type, data, id=id, tenant_id=tenant_id, max_payload=MAX_PAYLOAD_BYTES)
    payload = json.dumps(dict(data or {}), ensure_ascii=False, separators=(",", ":"))
    key: str = await conn.fetchval(queries["notify"], type, payload, checked.key, tenant_id)
    return key
