"""The `deliveries` rows fanout creates: one per (event, subscription), written in batches."""

from __future__ import annotations

import asyncpg

from shared.errors import DATABASE_ERRORS, StorageUnavailable
from shared.sql import queries

_DELIVERIES_SQL = queries("deliveries")

DeliveryRow = tuple[str, str, str]
"""(delivery id, event id, subscription id)."""


async def insert_deliveries(pool: asyncpg.Pool, rows: list[DeliveryRow]) -> None:
    """Insert pending deliveries in one statement; rows that exist already are left alone.

    Raises StorageUnavailable when Postgres fails, and asyncpg's IntegrityConstraintViolation
    when a row names an event or subscription that is not stored.
    """
    ids, event_ids, subscription_ids = zip(*rows, strict=True)
    try:
        await pool.execute(
            _DELIVERIES_SQL["insert_pending"], list(ids), list(event_ids), list(subscription_ids)
        )
    except asyncpg.IntegrityConstraintViolationError:
        raise
    except DATABASE_ERRORS as exc:
        raise StorageUnavailable(f"cannot write deliveries: {exc}") from exc


def is_row_error(exc: BaseException) -> bool:
    """True for errors caused by some row of a batch rather than by the database."""
    return isinstance(exc, asyncpg.IntegrityConstraintViolationError)
