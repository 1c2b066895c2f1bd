"""hookline_client against the real services: notify() and the outbox end in webhooks, once.

Each test subscribes a path of its own with a tenant of its own on the module's stack. "Once"
is shown twice over: Hookline stored one event for the key, and once a sentinel published
after it has arrived, the receiver got the event exactly once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from hookline_client import AsyncNotifier, Notifier, outbox
from hookline_client.outbox.relay import CRASH_AFTER_CONFIRM_ENV

from tests.support import (
    ADMIN_DATABASE_URL,
    AMQP_URL,
    close_connections,
    database_url,
    unique_name,
)
from tests.support.e2e import create_subscription, new_tenant, verified_payload
from tests.support.receiver import Received, Receiver
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

RELAY = [sys.executable, "-m", "hookline_client.outbox.cli", "relay"]


def marked(requests: list[Received], path: str, marker: str) -> list[Received]:
    return [r for r in requests if r.path == path and r.json()["data"].get("marker") == marker]


async def stored_with_key(stack: Stack, key: str) -> int:
    conn = await asyncpg.connect(database_url(stack.db_name))
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM events WHERE idempotency_key = $1", key
        )
        return count
    finally:
        await conn.close()


async def subscribe(stack: Stack, receiver: Receiver, path: str, tenant: str) -> dict[str, Any]:
    async with stack.api() as api:
        return await create_subscription(api, receiver.url(path), ["*"], tenant_id=tenant)


async def test_notify_arrives_signed_once_and_a_repeated_id_once(
    stack: Stack, receiver: Receiver
) -> None:
    tenant = new_tenant()
    sub = await subscribe(stack, receiver, "/notify", tenant)
    key = unique_name("in_1-paid-")
    async with AsyncNotifier(AMQP_URL, namespace=stack.namespace) as notifier:
        data = {"marker": "paid", "invoice_id": "in_1"}
        assert await notifier.notify("invoice.paid", data, id=key, tenant_id=tenant) == key
        assert await notifier.notify("invoice.paid", data, id=key, tenant_id=tenant) == key
        with pytest.raises(ValueError, match="invalid event type"):
            await notifier.notify("InvoicePaid", data, tenant_id=tenant)
        await notifier.notify("invoice.sent", {"marker": "sentinel"}, tenant_id=tenant)
    await receiver.wait_for(
        lambda got: bool(marked(got, "/notify", "paid") and marked(got, "/notify", "sentinel"))
    )
    [request] = marked(receiver.received, "/notify", "paid")
    payload = verified_payload(sub["secret"], request)
    assert payload["type"] == "invoice.paid"
    assert payload["data"] == {"marker": "paid", "invoice_id": "in_1"}
    assert await stored_with_key(stack, key) == 1


async def test_a_closed_connection_between_two_calls_loses_nothing(
    stack: Stack, receiver: Receiver
) -> None:
    tenant, name = new_tenant(), unique_name("e2e-client-")
    await subscribe(stack, receiver, "/outage", tenant)
    async with AsyncNotifier(AMQP_URL, stack.namespace, connection_name=name) as notifier:
        await notifier.notify("invoice.paid", {"marker": "before"}, tenant_id=tenant)
        assert await close_connections({name}) == [name]
        await notifier.notify("invoice.paid", {"marker": "after"}, tenant_id=tenant)
    got = await receiver.wait_for(
        lambda got: bool(marked(got, "/outage", "before") and marked(got, "/outage", "after"))
    )
    assert len(marked(got, "/outage", "before")) == len(marked(got, "/outage", "after")) == 1


async def test_the_sync_notifier_from_threads_delivers_every_event(
    stack: Stack, receiver: Receiver
) -> None:
    tenant = new_tenant()
    await subscribe(stack, receiver, "/threads", tenant)
    with Notifier(AMQP_URL, stack.namespace) as notifier:

        def send(i: int) -> str:
            return notifier.notify("job.done", {"marker": f"t{i}"}, tenant_id=tenant)

        keys = await asyncio.gather(*(asyncio.to_thread(send, i) for i in range(6)))
    assert len(set(keys)) == 6
    await receiver.wait_for(lambda got: all(marked(got, "/threads", f"t{i}") for i in range(6)))


@pytest.fixture
async def producer() -> AsyncIterator[str]:
    """A producer's own database with the outbox migrated (by the command, as users do)."""
    name = unique_name("producer_")
    admin = await asyncpg.connect(ADMIN_DATABASE_URL)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = database_url(name)
    try:
        migrate = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hookline_client.outbox.cli", "migrate", "--database-url", url
        )
        assert await asyncio.wait_for(migrate.wait(), 60) == 0
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def start_relay(stack: Stack, url: str, **env: str) -> asyncio.subprocess.Process:
    args = ["--database-url", url, "--amqp-url", AMQP_URL, "--namespace", stack.namespace]
    return await asyncio.create_subprocess_exec(
        *RELAY, *args, "--poll-interval", "1s", env={**os.environ, **env}
    )


async def stop_relay(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 30) == 0, "the relay did not exit 0 on SIGTERM"


async def test_outbox_committed_delivered_once_rolled_back_never(
    stack: Stack, receiver: Receiver, producer: str
) -> None:
    tenant = new_tenant()
    await subscribe(stack, receiver, "/outbox", tenant)
    relay = await start_relay(stack, producer)
    conn = await asyncpg.connect(producer)
    try:
        async with conn.transaction():
            key = await outbox.notify(conn, "order.placed", {"marker": "kept"}, tenant_id=tenant)
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                await outbox.notify(conn, "order.placed", {"marker": "undone"}, tenant_id=tenant)
                raise RuntimeError("the order failed")
        async with conn.transaction():
            await outbox.notify(conn, "order.placed", {"marker": "sentinel"}, tenant_id=tenant)
        got = await receiver.wait_for(
            lambda got: bool(marked(got, "/outbox", "kept") and marked(got, "/outbox", "sentinel"))
        )
    finally:
        await conn.close()
        await stop_relay(relay)
    assert len(marked(got, "/outbox", "kept")) == 1
    assert marked(got, "/outbox", "undone") == []
    assert await stored_with_key(stack, key) == 1


async def test_outbox_relay_killed_between_confirm_and_mark_delivers_once(
    stack: Stack, receiver: Receiver, producer: str
) -> None:
    tenant = new_tenant()
    await subscribe(stack, receiver, "/crash", tenant)
    conn = await asyncpg.connect(producer)
    try:
        key = await outbox.notify(conn, "invoice.paid", {"marker": "crash"}, tenant_id=tenant)
        crashed = await start_relay(stack, producer, **{CRASH_AFTER_CONFIRM_ENV: "1"})
        assert await asyncio.wait_for(crashed.wait(), 60) == -signal.SIGKILL
        unmarked = "SELECT count(*) FROM hookline_outbox WHERE published_at IS NULL"
        assert await conn.fetchval(unmarked) == 1  # published, confirmed, never marked
        relay = await start_relay(stack, producer)
        try:
            await outbox.notify(conn, "invoice.sent", {"marker": "sentinel"}, tenant_id=tenant)
            got = await receiver.wait_for(
                lambda got: bool(
                    marked(got, "/crash", "crash") and marked(got, "/crash", "sentinel")
                )
            )
        finally:
            await stop_relay(relay)
    finally:
        await conn.close()
    assert len(marked(got, "/crash", "crash")) == 1
    assert await stored_with_key(stack, key) == 1


async def test_two_relays_deliver_each_event_once(
    stack: Stack, receiver: Receiver, producer: str
) -> None:
    tenant = new_tenant()
    await subscribe(stack, receiver, "/replicas", tenant)
    relays = [await start_relay(stack, producer) for _ in range(2)]
    conn = await asyncpg.connect(producer)
    try:
        for batch in range(5):
            async with conn.transaction():
                for i in range(10):
                    marker = f"r{batch * 10 + i}"
                    await outbox.notify(conn, "job.queued", {"marker": marker}, tenant_id=tenant)
        await outbox.notify(conn, "job.queued", {"marker": "sentinel"}, tenant_id=tenant)
        got = await receiver.wait_for(
            lambda got: (
                all(marked(got, "/replicas", f"r{i}") for i in range(50))
                and bool(marked(got, "/replicas", "sentinel"))
            )
        )
    finally:
        await conn.close()
        for relay in relays:
            await stop_relay(relay)
    assert all(len(marked(got, "/replicas", f"r{i}")) == 1 for i in range(50))
