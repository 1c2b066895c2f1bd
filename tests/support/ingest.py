"""Running the ingest component in-process against the real broker and database, for tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aio_pika
import aiohttp
import orjson
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from services.ingest.app import run
from shared.runtime import serve
from shared.settings import Settings
from shared.topology import Topology
from tests.support import AMQP_URL, API_TOKEN, wait_ready

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


@dataclass
class Ingest:
    """A running ingest: an API client, and a test queue bound to `{ns}.events`."""

    settings: Settings
    topology: Topology
    http: aiohttp.ClientSession
    channel: AbstractChannel
    events: AbstractQueue

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.settings.api_port}"

    async def call(
        self, method: str, path: str, body: Any = None, *, auth: bool = True, **kwargs: Any
    ) -> tuple[int, Any, aiohttp.ClientResponse]:
        """One API request; (status, decoded JSON body or None, response)."""
        headers = dict(AUTH) if auth else {}
        headers.update(kwargs.pop("headers", {}))
        if body is not None:
            kwargs["data"] = orjson.dumps(body)
            headers.setdefault("Content-Type", "application/json")
        async with self.http.request(method, self.base + path, headers=headers, **kwargs) as resp:
            raw = await resp.read()
            return resp.status, orjson.loads(raw) if raw else None, resp

    async def publish(
        self, body: bytes | dict[str, Any], routing_key: str = "any.thing", **headers: Any
    ) -> None:
        """Publish to `{ns}.ingest` as an application would (persistent, confirmed)."""
        raw = body if isinstance(body, bytes) else orjson.dumps(body)
        exchange = await self.channel.get_exchange(self.topology.ingest_exchange.name)
        message = aio_pika.Message(
            raw,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            headers=headers,
        )
        await exchange.publish(message, routing_key)

    async def take(self, queue: AbstractQueue, count: int, timeout_s: float = 10) -> list[Any]:
        """`count` messages from `queue`, waiting up to `timeout_s` for them."""
        got: list[AbstractIncomingMessage] = []
        deadline = time.monotonic() + timeout_s
        while len(got) < count and time.monotonic() < deadline:
            message = await queue.get(no_ack=True, fail=False)
            if message is None:
                await asyncio.sleep(0.05)
            else:
                got.append(message)
        return got

    async def rejected_queue(self) -> AbstractQueue:
        return await self.channel.get_queue(self.topology.rejected_queue.name)


@asynccontextmanager
async def running_ingest(settings: Settings) -> AsyncIterator[Ingest]:
    """Ingest running until the block ends; then stopped and checked to have exited cleanly."""
    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, "ingest", [("ingest", run)], stop=stop))
    topology = Topology(settings.namespace, settings.retry_delays)
    async with aiohttp.ClientSession() as http:
        await wait_ready(settings, task)
        connection = await aio_pika.connect(AMQP_URL)
        try:
            channel = await connection.channel()
            events = await channel.declare_queue(exclusive=True)
            await events.bind(topology.events_exchange.name, "#")
            yield Ingest(settings, topology, http, channel, events)
        finally:
            await connection.close()
            stop.set()
            assert await task == 0
