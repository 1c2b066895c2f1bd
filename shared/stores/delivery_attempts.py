"""delivery_attempts: one row per HTTP attempt, written by the sender, read by the API."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from shared.sql import queries
from shared.stores import Connection

_DELIVERY_ATTEMPTS_SQL = queries("delivery_attempts").require("of_delivery")

COLUMNS = (
    "delivery_id",
    "attempt",
    "attempted_at",
    "status_code",
    "duration_ms",
    "outcome",
    "error_kind",
    "error",
    "response_body",
)
"""The order of the values of each record `insert` is given."""


async def insert(conn: Connection, records: Sequence[tuple[object, ...]]) -> None:
    """Append attempts with COPY: one round trip for a whole batch."""
    await conn.copy_records_to_table("delivery_attempts", records=records, columns=COLUMNS)


async def of_delivery(conn: Connection, delivery_id: str) -> list[asyncpg.Record]:
    """A delivery's attempts, oldest first."""
    return list(await conn.fetch(_DELIVERY_ATTEMPTS_SQL["of_delivery"], delivery_id))
