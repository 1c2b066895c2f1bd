"""The asyncpg pool, and `hookline migrate`: create the database, apply versioned SQL files.

The migrator is the one owner of `schema_migrations` and of creating and dropping the
database (`shared/sql/schema_migrations.sql`). It runs them here rather than through a
store of `shared/stores/`, because none goes through the pool: the migrator's session holds
its advisory lock for the whole run, and a database is created and dropped from `postgres`.
"""

from __future__ import annotations

import asyncio
import re
import time
from importlib import resources
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson

from shared.errors import StorageUnavailable
from shared.logging import get_logger
from shared.sql import queries, quote_identifier

_MIGRATIONS_SQL = queries("schema_migrations").require(
    "lock",
    "create_table",
    "applied",
    "record",
    "database_exists",
    "create_database",
    "drop_database",
)

log = get_logger("db")

_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


async def _init_connection(conn: asyncpg.Connection) -> None:
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name,
            encoder=lambda v: orjson.dumps(v).decode(),
            decoder=orjson.loads,
            schema="pg_catalog",
        )


async def _reset_connection(conn: asyncpg.Connection) -> None:
    # asyncpg's default reset runs `UNLISTEN *; RESET ALL; CLOSE ALL; advisory unlock` on every
    # release: a full round trip per query in ingest's profile. Pooled connections never hold
    # session state here (the LISTENing caches and the migrator's lock use connections of
    # their own), so only an unfinished transaction needs undoing.
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def create_pool(database_url: str, *, size: int = 10) -> asyncpg.Pool:
    """A pool whose connections speak JSON through orjson, opened as they are needed.

    Not all at start: with every connection open, Postgres spent about twice the CPU per
    delivery in fanout-1 (0.13-0.15 against 0.07-0.10 ms, three side-by-side pairs), more
    than the first seconds of traffic gained. Connections must not keep session state
    (LISTEN, SET, advisory locks) across a release: the pool's reset only rolls back an
    unfinished transaction.
    """
    try:
        pool = await asyncpg.create_pool(
            database_url,
            min_size=1,
            max_size=size,
            init=_init_connection,
            reset=_reset_connection,
            command_timeout=30,
        )
    except (OSError, asyncpg.PostgresError) as exc:
        raise StorageUnavailable(f"cannot connect to Postgres: {exc}") from exc
    assert pool is not None
    return pool


def _split_database(database_url: str) -> tuple[str, str]:
    parts = urlsplit(database_url)
    name = parts.path.lstrip("/") or "postgres"
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    return admin_url, name


async def create_database_if_missing(database_url: str) -> bool:
    """Create the database named in the URL when it does not exist; True when created."""
    admin_url, name = _split_database(database_url)
    conn = await asyncpg.connect(admin_url)
    try:
        exists = await conn.fetchval(_MIGRATIONS_SQL["database_exists"], name)
        if exists:
            return False
        try:
            await conn.execute(
                _MIGRATIONS_SQL["create_database"].format(database=quote_identifier(name))
            )
        except asyncpg.DuplicateDatabaseError:
            return False
        return True
    finally:
        await conn.close()


async def drop_database(database_url: str) -> None:
    """Drop the database named in the URL (tests clean up with it)."""
    admin_url, name = _split_database(database_url)
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(_MIGRATIONS_SQL["drop_database"].format(database=quote_identifier(name)))
    finally:
        await conn.close()


def migration_files() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration shipped with the package, in order."""
    found = []
    for entry in resources.files("shared.migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), match.group(2), entry.read_text()))
    return sorted(found)


async def migrate(database_url: str, *, up_to: int | None = None) -> list[str]:
    """Create the database if missing and apply pending migrations; returns what was applied.

    `up_to` stops after that version (a staged upgrade applies the rest later).
    """
    if await create_database_if_missing(database_url):
        log.info("database_created")
    conn = await asyncpg.connect(database_url)
    applied: list[str] = []
    try:
        # One migrator at a time: two services starting together must not race.
        await conn.execute(_MIGRATIONS_SQL["lock"])
        await conn.execute(_MIGRATIONS_SQL["create_table"])
        done = {r["version"] for r in await conn.fetch(_MIGRATIONS_SQL["applied"])}
        for version, name, sql in migration_files():
            if version in done or (up_to is not None and version > up_to):
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(_MIGRATIONS_SQL["record"], version, name)
            applied.append(f"{version:04d}_{name}")
            log.info("migration_applied", version=version, name=name)
    finally:
        await conn.close()
    return applied


_NOT_ANSWERING = (
    OSError,
    TimeoutError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.ConnectionDoesNotExistError,
)
"""What a database still starting (or not yet reachable) answers; anything else is final."""


async def migrate_when_reachable(
    database_url: str, timeout_s: float, *, up_to: int | None = None
) -> list[str]:
    """`migrate`, retried while Postgres does not answer yet, for at most `timeout_s`.

    For an init container started beside a database that is still coming up: connection
    refused, DNS not resolving yet, "the database system is starting up". A wrong password
    or a failing migration is not retried. Raises `StorageUnavailable` past the timeout.
    """
    deadline = time.monotonic() + timeout_s
    delay_s = 0.5
    while True:
        try:
            return await migrate(database_url, up_to=up_to)
        except _NOT_ANSWERING as exc:
            error = f"{type(exc).__name__}: {exc}"
            if time.monotonic() + delay_s > deadline:
                raise StorageUnavailable(
                    f"Postgres did not answer within {timeout_s:g}s: {error}"
                ) from exc
            log.info("database_not_answering", error=error, retry_in_s=delay_s)
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, 5.0)
