"""Test helpers: isolated namespaces and databases on the real broker and Postgres.

Every helper module the tests share lives in this package, named after what it helps with
(`sender`, `fanout`, `ingest`, `pipeline`, `portal`, `stack`, `receiver`, ...); no module
here is named `test_*.py`, so pytest never collects one.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import aiohttp
import asyncpg

from bench.procs import free_port
from shared.settings import Settings
from shared.topology import Topology

ADMIN_DATABASE_URL = os.environ.get(
    "HOOKLINE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
AMQP_URL = os.environ.get("HOOKLINE_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
API_TOKEN = "test-token-0123456789"


def database_url(name: str) -> str:
    parts = urlsplit(ADMIN_DATABASE_URL)
    return urlunsplit(parts._replace(path=f"/{name}"))


def unique_name(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def make_settings(namespace: str, db_name: str, **overrides: object) -> Settings:
    """Settings for one isolated test run: its own namespace, database and ports."""
    values: dict[str, object] = {
        "amqp_url": AMQP_URL,
        "database_url": database_url(db_name),
        "namespace": namespace,
        "api_port": free_port(),
        "metrics_port": free_port(),
        "api_tokens": API_TOKEN,
        "retry_delays": "200ms,400ms",
        "delivery_timeout": "2s",
        "allow_private_targets": True,
        "log_format": "console",
        "shutdown_grace": "3s",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


async def create_database_from_template(name: str, template: str) -> None:
    conn = await asyncpg.connect(ADMIN_DATABASE_URL)
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    finally:
        await conn.close()


async def drop_database(name: str) -> None:
    conn = await asyncpg.connect(ADMIN_DATABASE_URL)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def delete_namespace(namespace: str, retry_delays_s: tuple[float, ...]) -> None:
    """Delete every exchange and queue a test namespace may have declared."""
    topology = Topology(namespace, retry_delays_s)
    exchanges, queues = topology.everything()
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        for queue in queues:
            await channel.queue_delete(queue.name)
        for exchange in exchanges:
            await channel.exchange_delete(exchange.name)
    finally:
        await connection.close()


async def wait_ready(settings: Settings, task: asyncio.Task[int], timeout_s: float = 30.0) -> None:
    """Wait until the service `task` runs (`serve` in this process) answers `/readyz` 200.

    Raises RuntimeError when the service stops first, TimeoutError past `timeout_s`.
    """
    url = f"http://127.0.0.1:{settings.metrics_port}/readyz"
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if task.done():
                raise RuntimeError(f"the service stopped during start: exit {task.result()}")
            try:
                async with http.get(url) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise TimeoutError("the service did not become ready")


async def rabbitmqctl(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        "rabbitmqctl", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    if proc.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {args}: {err.decode()}")
    return out.decode()


async def close_connections(names: set[str]) -> list[str]:
    """Have the broker close every connection named one of `names` (ours only: names carry
    the test's namespace); returns the names closed."""
    listing = await rabbitmqctl("list_connections", "pid", "client_properties", "-q")
    closed = []
    for line in listing.splitlines():
        match = re.search(r'\{"connection_name","([^"]+)"\}', line)
        if match is None or match.group(1) not in names:
            continue
        pid = line.split("\t", 1)[0]
        await rabbitmqctl("close_connection", pid, "closed by a Hookline test")
        closed.append(match.group(1))
    return closed
