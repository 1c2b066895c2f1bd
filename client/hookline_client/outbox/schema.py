"""`hookline-outbox migrate`: create or upgrade the outbox in the producer's database.

The outbox has its own schema versions, recorded in `hookline_outbox_migrations`, apart
from anything else in the producer's database. Every pending migration is applied in its
own transaction under an advisory lock, so concurrent runs (several pods starting) are safe
and a second run changes nothing.
"""

from __future__ import annotations

import asyncpg

from hookline_client.outbox.sql import migrations

_LOCK_KEY = 0x686F6F6B6F7574  # "hookout": one advisory lock for outbox migrations
_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS hookline_outbox_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


async def migrate(conn: asyncpg.Connection) -> list[str]:
    """Apply the pending outbox migrations on `conn`; returns the names applied (in order)."""
    applied: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(_CREATE_TABLE)
        done = {
            r["version"] for r in await conn.fetch("SELECT version FROM hookline_outbox_migrations")
        }
        for version, name, sql in migrations():
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO hookline_outbox_migrations (version, name) VALUES ($1, $2)",
                    version,
                    name,
                )
            applied.append(f"{version:04d}_{name}")
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    return applied
