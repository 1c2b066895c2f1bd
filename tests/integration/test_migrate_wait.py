"""`hookline migrate --wait`: an init container beside a database that comes up late."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest

from tests.integration.test_migrate import applied_versions
from tests.support import ADMIN_DATABASE_URL, drop_database, free_port, unique_name


@pytest.fixture
async def missing_database() -> AsyncIterator[str]:
    name = unique_name("hookline_wait_")
    yield name
    await drop_database(name)


def url_via(port: int, name: str) -> str:
    """The test database's URL, reached through 127.0.0.1:`port` instead."""
    parts = urlsplit(ADMIN_DATABASE_URL)
    user = f"{parts.username}@" if parts.username else ""
    return f"postgresql://{user}127.0.0.1:{port}/{name}"


async def start_migrate(url: str, *args: str) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKLINE_")}
    env |= {"HOOKLINE_DATABASE_URL": url, "HOOKLINE_LOG_FORMAT": "json"}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli",
        "migrate",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def _relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


async def forward_to_postgres(
    client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter
) -> None:
    """One connection of a TCP relay to the real Postgres: the database 'coming up'."""
    parts = urlsplit(ADMIN_DATABASE_URL)
    server_r, server_w = await asyncio.open_connection(parts.hostname, parts.port or 5432)
    await asyncio.gather(_relay(client_r, server_w), _relay(server_r, client_w))


async def test_waits_for_a_database_that_answers_late(missing_database: str) -> None:
    port = free_port()
    migrating = await start_migrate(url_via(port, missing_database), "--wait", "--timeout", "60s")
    assert migrating.stderr is not None
    # It tried, found nothing listening, and says (in its log) that it will retry.
    while True:
        line = await migrating.stderr.readline()
        assert line, "migrate ended without retrying"
        if b"database_not_answering" in line:
            break
    relay = await asyncio.start_server(forward_to_postgres, "127.0.0.1", port)
    try:
        out, err = await migrating.communicate()
    finally:
        relay.close()
    assert migrating.returncode == 0, err.decode()
    assert b"migrations applied" in out
    direct = ADMIN_DATABASE_URL.rsplit("/", 1)[0] + f"/{missing_database}"
    assert await applied_versions(direct)


async def test_gives_up_after_its_timeout_with_a_clear_error() -> None:
    migrating = await start_migrate(url_via(free_port(), "nowhere"), "--wait", "--timeout", "1s")
    _, err = await migrating.communicate()
    assert migrating.returncode == 1
    assert b"error: Postgres did not answer within 1s" in err


async def test_without_wait_a_missing_database_server_fails_at_once() -> None:
    migrating = await start_migrate(url_via(free_port(), "nowhere"))
    _, err = await migrating.communicate()
    assert migrating.returncode != 0
    assert b"database_not_answering" not in err
