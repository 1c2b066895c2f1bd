"""Helpers of the sender tests: a scripted receiver, rows in Postgres, the sender in-process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import asyncpg
from aiohttp import web

from services.sender.app import run as run_sender
from shared.amqp import declare
from shared.ids import delivery_id, new_id
from shared.models import webhook_body
from shared.runtime import serve
from shared.settings import Settings
from shared.signing import generate_secret
from shared.topology import SEND_ROUTING_KEY, Topology
from shared.wire.messages import DeliveryMessage
from shared.wire.properties import delivery_json_message
from tests.support import AMQP_URL, wait_ready


@dataclass(frozen=True)
class Answer:
    """What the receiver answers to one request."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    body: bytes = b"ok"
    hold: asyncio.Event | None = None
    """When given, the answer waits until the test sets it."""


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    """time.monotonic() when the request arrived."""


class Receiver:
    """A real HTTP receiver on 127.0.0.1 answering from a script (its last answer repeats)."""

    def __init__(self, *script: Answer) -> None:
        self._script = list(script) or [Answer()]
        self.requests: list[Received] = []
        self._arrived = asyncio.Condition()
        self.port = 0

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        answer = self._script[min(len(self.requests), len(self._script) - 1)]
        seen = Received(request.method, request.path, dict(request.headers), body, time.monotonic())
        self.requests.append(seen)
        async with self._arrived:
            self._arrived.notify_all()
        if answer.delay_s:
            await asyncio.sleep(answer.delay_s)
        if answer.hold is not None:
            await answer.hold.wait()
        return web.Response(status=answer.status, headers=answer.headers, body=answer.body)

    async def wait_for(self, count: int, timeout_s: float = 20.0) -> list[Received]:
        """The first `count` requests, once they have arrived."""
        async with asyncio.timeout(timeout_s), self._arrived:
            await self._arrived.wait_for(lambda: len(self.requests) >= count)
        return self.requests[:count]

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Receiver]:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            yield self
        finally:
            await runner.cleanup()


@dataclass(frozen=True)
class Delivery:
    """A delivery as inserted: its rows exist, its message is ready to publish."""

    message: DeliveryMessage
    secret: str


async def insert_subscription(
    conn: asyncpg.Connection,
    url: str,
    *,
    secret: str | None = None,
    status: str = "enabled",
    previous_secret: str | None = None,
) -> tuple[str, str]:
    """A subscription to everything (with `previous_secret` valid for a day, if given);
    returns (id, secret)."""
    sub_id = new_id("sub")
    secret = secret or generate_secret()
    await conn.execute(
        "INSERT INTO subscriptions (id, url, event_types, status, disabled_reason, secret,"
        " previous_secret, previous_secret_expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        sub_id,
        url,
        ["*"],
        status,
        None if status == "enabled" else "manual",
        secret,
        previous_secret,
        datetime.now(UTC) + timedelta(days=1) if previous_secret else None,
    )
    return sub_id, secret


async def insert_delivery(conn: asyncpg.Connection, subscription_id: str) -> DeliveryMessage:
    """An event and its pending delivery to `subscription_id`; returns the message for it."""
    event_id = new_id("evt")
    data = {"invoice_id": "in_1", "amount": 990}
    created = datetime.now(UTC)
    await conn.execute(
        "INSERT INTO events (id, type, data, source, created_at) VALUES ($1, $2, $3, 'amqp', $4)",
        event_id,
        "invoice.paid",
        '{"invoice_id": "in_1", "amount": 990}',
        created,
    )
    dlv = delivery_id(event_id, subscription_id)
    await conn.execute(
        "INSERT INTO deliveries (id, event_id, subscription_id) VALUES ($1, $2, $3)",
        dlv,
        event_id,
        subscription_id,
    )
    return DeliveryMessage(
        delivery_id=dlv,
        event_id=event_id,
        subscription_id=subscription_id,
        event_type="invoice.paid",
        body=webhook_body("invoice.paid", created, data),
        attempt=1,
        accepted_at=time.time(),
    )


async def publish(settings: Settings, *messages: DeliveryMessage) -> None:
    """Publish delivery messages to the deliveries exchange as fanout does (confirmed)."""
    topology = Topology(settings.namespace, settings.retry_delays)
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        exchanges, queues = topology.for_sender()
        declared, _ = await declare(channel, exchanges, queues)
        exchange = declared[topology.deliveries_exchange.name]
        for msg in messages:
            await exchange.publish(
                delivery_json_message(msg),
                routing_key=SEND_ROUTING_KEY,
            )
    finally:
        await connection.close()


async def queue_messages(settings: Settings, queue_name: str) -> list[dict[str, Any]]:
    """The headers of every message in a queue, leaving them there."""
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(queue_name, passive=True)
        held = []
        while (message := await queue.get(no_ack=False, fail=False)) is not None:
            held.append(message)
        found = [dict(m.headers or {}) for m in held]
        for message in held:
            await message.nack(requeue=True)
        return found
    finally:
        await connection.close()


async def queue_depths(settings: Settings) -> dict[str, int]:
    """How many messages wait in the sender's work queue and each retry queue."""
    topology = Topology(settings.namespace, settings.retry_delays)
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        depths = {}
        for q in (topology.deliveries_queue, *topology.retry_queues):
            declared = await channel.declare_queue(q.name, passive=True)
            depths[q.name] = declared.declaration_result.message_count or 0
        return depths
    finally:
        await connection.close()


@asynccontextmanager
async def sender_running(settings: Settings) -> AsyncIterator[None]:
    """The sender component in this process, stopped (and checked for a clean exit) after."""
    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, "sender", [("sender", run_sender)], stop=stop))
    try:
        # Declared by the test too, so nothing published before the sender is up is lost.
        await publish(settings)
        # Ready first: a test's rows must not race the sender's start (a garbage secret
        # inserted before its start-up key check would stop it instead of being tested).
        await wait_ready(settings, task)
        yield
    finally:
        stop.set()
        exit_code = await asyncio.wait_for(task, 30)
        assert exit_code == 0


async def wait_for_status(
    conn: asyncpg.Connection, delivery: str, status: str, timeout_s: float = 20.0
) -> asyncpg.Record:
    """The delivery's row once it has `status`."""
    deadline = time.monotonic() + timeout_s
    while True:
        row = await conn.fetchrow("SELECT * FROM deliveries WHERE id = $1", delivery)
        if row is not None and row["status"] == status:
            return row
        if time.monotonic() > deadline:
            raise AssertionError(f"delivery {delivery} is {row and row['status']}, not {status}")
        await asyncio.sleep(0.05)


async def attempts_of(conn: asyncpg.Connection, delivery: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT * FROM delivery_attempts WHERE delivery_id = $1 ORDER BY attempt, id", delivery
    )


@asynccontextmanager
async def database(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    try:
        yield conn
    finally:
        await conn.close()


@asynccontextmanager
async def variant(settings: Settings, **changes: Any) -> AsyncIterator[Settings]:
    """`settings` with `changes`; retry queues of a changed schedule are deleted after."""
    changed = settings.model_copy(update=changes)
    try:
        yield changed
    finally:
        extra = set(changed.retry_delays) - set(settings.retry_delays)
        topology = Topology(settings.namespace, tuple(extra))
        connection = await aio_pika.connect(AMQP_URL)
        try:
            channel = await connection.channel()
            for queue in topology.retry_queues:
                await channel.queue_delete(queue.name)
        finally:
            await connection.close()
