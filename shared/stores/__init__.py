"""Repositories: the SQL of each table, one module per table, shared by every service.

Every query on the pool goes through `connection()` or `transaction()`, the one place where a
database that cannot be reached becomes `StorageUnavailable` (the API's 503, the consumer's
requeue). A function that takes a `Connection` runs on its caller's: a transaction the caller
spans over several calls (retention's DDL), or a connection of its own that the caller
guards (the change follower's, the backlog sampler's).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from shared.errors import StorageUnavailable

Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy

_UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    # A pooled connection whose server side was killed mid-protocol can answer this instead.
    asyncpg.exceptions.InternalClientError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    # What (re)connecting answers for a database that was dropped or closed to connections;
    # our own queries never raise these otherwise.
    asyncpg.exceptions.InvalidCatalogNameError,
    asyncpg.exceptions.ObjectNotInPrerequisiteStateError,
)


@asynccontextmanager
async def connection(pool: asyncpg.Pool) -> AsyncIterator[Connection]:
    """A pooled connection; database outages inside the block raise StorageUnavailable."""
    try:
        async with pool.acquire() as conn:
            yield conn
    except _UNAVAILABLE as exc:
        raise StorageUnavailable(f"Postgres is unavailable: {type(exc).__name__}") from exc


@asynccontextmanager
async def transaction(pool: asyncpg.Pool) -> AsyncIterator[Connection]:
    """Like `connection()`, inside one transaction."""
    async with connection(pool) as conn, conn.transaction():
        yield conn
