"""The event-type catalogue's rows: the API's reads and writes, and the validating cache's.

The cache (`shared.event_types.Catalogue`) reads on its change follower's connection, so
`catalogue` and `catalogue_of` take a connection where the others take the pool.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from shared.errors import Conflict
from shared.sql import queries
from shared.stores import Connection, connection

_EVENT_TYPES_SQL = queries("event_types").require(
    "insert", "get", "list", "update", "delete", "catalogue", "catalogue_of"
)

_SETTABLE = frozenset({"description", "schema"})


async def create(
    pool: asyncpg.Pool, name: str, description: str, schema: dict[str, Any] | None
) -> asyncpg.Record:
    """Add a type; raises Conflict when the name exists."""
    async with connection(pool) as conn:
        row = await conn.fetchrow(_EVENT_TYPES_SQL["insert"], name, description, schema)
    if row is None:
        raise Conflict(f"the event type {name} exists already")
    return row


async def get(pool: asyncpg.Pool, name: str) -> asyncpg.Record | None:
    async with connection(pool) as conn:
        row: asyncpg.Record | None = await conn.fetchrow(_EVENT_TYPES_SQL["get"], name)
        return row


async def list_page(pool: asyncpg.Pool, after: str | None, limit: int) -> list[asyncpg.Record]:
    async with connection(pool) as conn:
        return list(await conn.fetch(_EVENT_TYPES_SQL["list"], after, limit))


async def update(pool: asyncpg.Pool, name: str, changes: dict[str, Any]) -> asyncpg.Record | None:
    """Apply `changes` (description, schema); None when the type does not exist."""
    assert set(changes) <= _SETTABLE
    async with connection(pool) as conn:
        row: asyncpg.Record | None = await conn.fetchrow(
            _EVENT_TYPES_SQL["update"],
            name,
            sorted(changes),
            changes.get("description"),
            changes.get("schema"),
        )
        return row


async def delete(pool: asyncpg.Pool, name: str) -> bool:
    async with connection(pool) as conn:
        return await conn.execute(_EVENT_TYPES_SQL["delete"], name) != "DELETE 0"


async def catalogue(conn: Connection) -> list[asyncpg.Record]:
    """Every type as the cache holds it: name, description, schema as JSON text (or None)."""
    return list(await conn.fetch(_EVENT_TYPES_SQL["catalogue"]))


async def catalogue_of(conn: Connection, names: list[str]) -> list[asyncpg.Record]:
    """`catalogue`'s rows of these names; a name without a row was deleted."""
    return list(await conn.fetch(_EVENT_TYPES_SQL["catalogue_of"], names))
