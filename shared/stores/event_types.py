"""The event-type catalogue's rows."""

from __future__ import annotations

from typing import Any

import asyncpg

from shared.errors import Conflict
from shared.sql import queries
from shared.stores import connection

_EVENT_TYPES_SQL = queries("event_types")

COLUMNS = "name, description, schema, created_at, updated_at"

_INSERT = f"""
INSERT INTO event_types (name, description, schema) VALUES ($1, $2, $3)
ON CONFLICT (name) DO NOTHING RETURNING {COLUMNS}
"""
_GET = f"SELECT {COLUMNS} FROM event_types WHERE name = $1"
_LIST = f"""
SELECT {COLUMNS} FROM event_types WHERE ($1::text IS NULL OR name > $1) ORDER BY name LIMIT $2
"""
_SETTABLE = frozenset({"description", "schema"})


async def create(
    pool: asyncpg.Pool, name: str, description: str, schema: dict[str, Any] | None
) -> asyncpg.Record:
    """Add a type; raises Conflict when the name exists."""
    async with connection(pool) as conn:
        row = await conn.fetchrow(_INSERT, name, description, schema)
    if row is None:
        raise Conflict(f"the event type {name} exists already")
    return row


async def get(pool: asyncpg.Pool, name: str) -> asyncpg.Record | None:
    async with connection(pool) as conn:
        row: asyncpg.Record | None = await conn.fetchrow(_GET, name)
        return row


async def list_page(pool: asyncpg.Pool, after: str | None, limit: int) -> list[asyncpg.Record]:
    async with connection(pool) as conn:
        return list(await conn.fetch(_LIST, after, limit))


async def update(pool: asyncpg.Pool, name: str, changes: dict[str, Any]) -> asyncpg.Record | None:
    """Apply `changes` (description, schema); None when the type does not exist."""
    assert set(changes) <= _SETTABLE
    sets = ["updated_at = now()"]
    values: list[Any] = [name]
    for column, value in sorted(changes.items()):
        values.append(value)
        sets.append(f"{column} = ${len(values)}")
    sql = f"UPDATE event_types SET {', '.join(sets)} WHERE name = $1 RETURNING {COLUMNS}"
    async with connection(pool) as conn:
        row: asyncpg.Record | None = await conn.fetchrow(sql, *values)
        return row


async def delete(pool: asyncpg.Pool, name: str) -> bool:
    async with connection(pool) as conn:
        return await conn.execute(_EVENT_TYPES_SQL["delete"], name) != "DELETE 0"
