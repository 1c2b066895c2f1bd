"""`hookline migrate`: creates the database when missing, applies each migration once."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from shared.db import migrate, migration_files
from tests.support import database_url, drop_database, unique_name


@pytest.fixture
async def missing_database() -> AsyncIterator[str]:
    """The name of a database that does not exist yet; dropped after the test."""
    name = unique_name("hookline_migrate_")
    yield name
    await drop_database(name)


async def applied_versions(url: str) -> list[int]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
    finally:
        await conn.close()
    return [r["version"] for r in rows]


async def test_creates_the_database_and_applies_every_migration(missing_database: str) -> None:
    url = database_url(missing_database)
    applied = await migrate(url)
    shipped = migration_files()
    assert applied == [f"{v:04d}_{name}" for v, name, _ in shipped]
    assert await applied_versions(url) == [v for v, _, _ in shipped]
    conn = await asyncpg.connect(url)
    try:
        tables = {
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")
        }
    finally:
        await conn.close()
    assert {"subscriptions", "event_types", "events", "deliveries", "delivery_attempts"} <= tables


async def test_a_second_run_applies_nothing(missing_database: str) -> None:
    url = database_url(missing_database)
    await migrate(url)
    assert await migrate(url) == []
    assert len(await applied_versions(url)) == len(migration_files())


async def test_concurrent_runs_apply_each_migration_once(missing_database: str) -> None:
    url = database_url(missing_database)
    await migrate(url)  # the database exists; now race the migrators on an empty history
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    finally:
        await conn.close()
    results = await asyncio.gather(migrate(url), migrate(url), migrate(url))
    assert sorted(len(r) for r in results) == [0, 0, len(migration_files())]


def test_the_command_migrates_and_says_what_it_applied(
    missing_database: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKLINE_")}
    env["HOOKLINE_DATABASE_URL"] = database_url(missing_database)
    hookline = Path(sys.executable).with_name("hookline")
    command = [str(hookline)] if hookline.exists() else [sys.executable, "-m", "services.cli"]

    def run() -> str:
        done = subprocess.run(
            [*command, "migrate"], env=env, cwd=tmp_path, capture_output=True, timeout=60
        )
        assert done.returncode == 0, done.stderr.decode()
        return done.stdout.decode()

    assert f"migrations applied: {len(migration_files())}" in run()
    assert "migrations applied: 0" in run()
