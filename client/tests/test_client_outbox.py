"""The outbox against real Postgres and RabbitMQ: committed rows published once, rolled
back ones never, replicas sharing the work, a crash between confirm and mark."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest
from conftest import AMQP_URL, Ingest, close_connections_named
from hookline_client import outbox
from hookline_client.outbox.relay import CRASH_AFTER_CONFIRM_ENV, Relay, RelayConfig


@pytest.fixture
async def producer(producer_db: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to a producer database with the outbox migrated."""
    conn = await asyncpg.connect(producer_db)
    await outbox.migrate(conn)
    try:
        yield conn
    finally:
        await conn.close()


@asynccontextmanager
async def relays(database_url: str, namespace: str, count: int = 1) -> AsyncIterator[None]:
    """`count` relays running in this process until the block ends (then stopped)."""
    stop = asyncio.Event()
    config = RelayConfig(database_url, AMQP_URL, namespace, batch_size=20, poll_interval_s=1)
    tasks = [asyncio.create_task(Relay(config).run(stop)) for _ in range(count)]
    try:
        yield
    finally:
        stop.set()
        await asyncio.gather(*tasks)


async def count_of(conn: asyncpg.Connection, where: str = "true") -> int:
    found: int = await conn.fetchval(f"SELECT count(*) FROM hookline_outbox WHERE {where}")
    return found


async def wait_published(conn: asyncpg.Connection, count: int, timeout_s: float = 30) -> None:
    async with asyncio.timeout(timeout_s):
        while True:
            if await count_of(conn, "published_at IS NOT NULL") >= count:
                return
            await asyncio.sleep(0.05)


async def test_migrate_is_idempotent(producer_db: str) -> None:
    conn = await asyncpg.connect(producer_db)
    try:
        assert await outbox.migrate(conn) == ["0001_outbox"]
        assert await outbox.migrate(conn) == []
    finally:
        await conn.close()
    command = [sys.executable, "-m", "hookline_client.outbox.cli", "migrate"]
    proc = await asyncio.create_subprocess_exec(
        *command, "--database-url", producer_db, stdout=asyncio.subprocess.PIPE
    )
    stdout, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0
    assert b"outbox migrations applied: 0" in stdout


async def test_committed_rows_are_published_once_rolled_back_never(
    producer: asyncpg.Connection, producer_db: str, ingest: Ingest
) -> None:
    async with producer.transaction():
        kept = await outbox.notify(producer, "order.placed", {"order": 1}, tenant_id="acme")
        # Any driver: the SQL function alone, in the same transaction.
        plain = await producer.fetchval(
            "SELECT hookline_outbox_notify('order.paid', '{\"order\": 1}'::jsonb, 'o-1-paid')"
        )
    with pytest.raises(RuntimeError, match="roll back"):
        async with producer.transaction():
            await outbox.notify(producer, "order.placed", {"order": 2}, id="rolled-back")
            raise RuntimeError("roll back")
    async with relays(producer_db, ingest.namespace):
        await wait_published(producer, 2)
        taken = await ingest.take(2)
    bodies = sorted((json.loads(m.body) for m in taken), key=lambda b: b["type"])
    assert bodies == [
        {"type": "order.paid", "id": "o-1-paid", "data": {"order": 1}},
        {"type": "order.placed", "id": kept, "tenant_id": "acme", "data": {"order": 1}},
    ]
    assert plain == "o-1-paid" and kept.startswith("hl_")
    assert await producer.fetchval("SELECT count(*) FROM hookline_outbox") == 2


async def test_a_bad_event_fails_in_the_producers_transaction(
    producer: asyncpg.Connection,
) -> None:
    with pytest.raises(ValueError, match="invalid event type"):
        await outbox.notify(producer, "Order", {})
    with pytest.raises(asyncpg.CheckViolationError, match="hookline_outbox_type_valid"):
        await producer.execute("SELECT hookline_outbox_notify('Order', '{}'::jsonb)")


async def test_two_relays_publish_each_row_once(
    producer: asyncpg.Connection, producer_db: str, ingest: Ingest
) -> None:
    async with relays(producer_db, ingest.namespace, count=2):
        for batch in range(10):
            async with producer.transaction():
                for i in range(20):
                    await outbox.notify(producer, "job.queued", {"n": batch * 20 + i})
        await wait_published(producer, 200)
    keys = [json.loads(m.body)["id"] for m in await ingest.take(200)]
    assert len(keys) == 200 and len(set(keys)) == 200


async def test_a_relay_killed_between_confirm_and_mark_resends_the_same_key(
    producer: asyncpg.Connection, producer_db: str, ingest: Ingest
) -> None:
    key = await outbox.notify(producer, "invoice.paid", {"invoice_id": "in_9"})
    env = {**os.environ, CRASH_AFTER_CONFIRM_ENV: "1"}
    command = [sys.executable, "-m", "hookline_client.outbox.cli", "relay"]
    args = ["--database-url", producer_db, "--amqp-url", AMQP_URL]
    args += ["--namespace", ingest.namespace]
    crashed = await asyncio.create_subprocess_exec(*command, *args, env=env)
    assert await asyncio.wait_for(crashed.wait(), 60) == -signal.SIGKILL
    [first] = await ingest.take(1)
    assert json.loads(first.body)["id"] == key
    unmarked = "SELECT count(*) FROM hookline_outbox WHERE published_at IS NULL"
    assert await producer.fetchval(unmarked) == 1

    async with relays(producer_db, ingest.namespace):
        await wait_published(producer, 1)
        [again] = await ingest.take(1)
    # The same event, with the same key: Hookline's ingest stores and delivers it once.
    assert again.body == first.body


async def test_the_relay_serves_metrics_and_stops_on_sigterm(
    producer: asyncpg.Connection, producer_db: str, ingest: Ingest
) -> None:
    port = _free_port()
    command = [sys.executable, "-m", "hookline_client.outbox.cli", "relay"]
    args = ["--database-url", producer_db, "--amqp-url", AMQP_URL, "--namespace", ingest.namespace]
    args += ["--metrics-port", str(port), "--metrics-host", "127.0.0.1", "--retention", "0s"]
    proc = await asyncio.create_subprocess_exec(*command, *args)
    try:
        for i in range(3):
            await outbox.notify(producer, "invoice.paid", {"n": i})
        await ingest.take(3)
        text = await asyncio.to_thread(_metrics_when, port, "hookline_outbox_published_total 3.0")
        assert "hookline_outbox_pending_rows" in text
        assert "hookline_outbox_oldest_pending_age_seconds" in text
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0


def _metrics_when(port: int, line: str, timeout_s: float = 30) -> str:
    import time

    deadline = time.monotonic() + timeout_s
    text = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
                text = answer.read().decode()
        except OSError:
            text = ""
        if line in text:
            return text
        time.sleep(0.1)
    raise AssertionError(f"{line!r} not in /metrics:\n{text}")


async def test_published_rows_are_removed_after_the_retention(
    producer: asyncpg.Connection, producer_db: str, ingest: Ingest
) -> None:
    await outbox.notify(producer, "invoice.paid", {})
    stop = asyncio.Event()
    config = RelayConfig(producer_db, AMQP_URL, ingest.namespace, retention_s=0.0)
    relay = Relay(config)
    task = asyncio.create_task(relay.run(stop))
    try:
        await ingest.take(1)
        # The first round publishes the row, then purges what is older than the retention.
        async with asyncio.timeout(30):
            while True:
                if await count_of(producer) == 0:
                    break
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_rows_wait_and_show_as_pending_while_hookline_is_absent(
    producer: asyncpg.Connection, producer_db: str
) -> None:
    for i in range(2):
        await outbox.notify(producer, "invoice.paid", {"n": i})
    port = _free_port()
    command = [sys.executable, "-m", "hookline_client.outbox.cli", "relay"]
    args = ["--database-url", producer_db, "--amqp-url", AMQP_URL, "--namespace", "nothing-here"]
    args += ["--metrics-port", str(port), "--metrics-host", "127.0.0.1"]
    proc = await asyncio.create_subprocess_exec(*command, *args, stderr=asyncio.subprocess.PIPE)
    try:
        failed = 'hookline_outbox_publish_failures_total{reason="unroutable"} 2.0'
        text = await asyncio.to_thread(_metrics_when, port, failed)
        assert "hookline_outbox_pending_rows 2.0" in text
        assert await count_of(producer, "published_at IS NULL") == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0
    assert b"exchange nothing-here.ingest does not exist" in err


async def test_the_relay_reconnects_after_its_broker_connection_is_closed(
    producer: asyncpg.Connection, producer_db: str, ingest: Ingest
) -> None:
    name = f"hookline-outbox-relay {socket.gethostname()}:{os.getpid()}"
    async with relays(producer_db, ingest.namespace):
        await outbox.notify(producer, "invoice.paid", {}, id="before-outage")
        await wait_published(producer, 1)
        assert await asyncio.to_thread(close_connections_named, name) == 1
        await outbox.notify(producer, "invoice.paid", {}, id="after-outage")
        await wait_published(producer, 2)
    keys = sorted(json.loads(m.body)["id"] for m in await ingest.take(2))
    assert keys == ["after-outage", "before-outage"]
