"""The three services in one process against the real broker and database, and the faults
a test may cause without touching anyone else: closing our own broker connections, and
cutting the network between us and the broker (a TCP proxy of our own)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aio_pika
import aiohttp
import orjson

from services.fanout.app import run as run_fanout
from services.ingest.app import run as run_ingest
from services.sender.app import run as run_sender
from shared.runtime import serve
from shared.settings import Settings
from shared.topology import Topology, topology_of
from tests.support import AMQP_URL, API_TOKEN, free_port
from tests.support.receiver import Receiver

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
WAIT_S = 60.0
"""A generous wait for what must happen eventually (no timing is asserted)."""


class CuttableProxy:
    """A TCP proxy to the broker that a test can cut (every connection reset, new ones
    refused) and restore: a network cut between Hookline and RabbitMQ."""

    def __init__(self, target_port: int = 5672) -> None:
        self.port = free_port()
        self._target_port = target_port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return AMQP_URL.replace(":5672", f":{self.port}")

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target_port)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        await asyncio.gather(
            _pipe(reader, up_writer), _pipe(up_reader, writer), return_exceptions=True
        )
        self._writers.difference_update((writer, up_writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.transport.abort()


@dataclass
class Pipeline:
    settings: Settings
    topology: Topology
    http: aiohttp.ClientSession
    receiver: Receiver
    channel: aio_pika.abc.AbstractChannel
    task: asyncio.Task[int]

    @property
    def ops(self) -> str:
        return f"http://127.0.0.1:{self.settings.metrics_port}"

    async def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        url = f"http://127.0.0.1:{self.settings.api_port}{path}"
        data = orjson.dumps(body) if body is not None else None
        headers = {**AUTH, "Content-Type": "application/json"}
        async with self.http.request(method, url, data=data, headers=headers) as resp:
            raw = await resp.read()
            return resp.status, orjson.loads(raw) if raw else None

    async def subscribe(self, path: str = "/hook") -> str:
        status, body = await self.api(
            "POST",
            "/v1/subscriptions",
            {"url": self.receiver.url(path), "event_types": ["*"]},
        )
        assert status == 201, body
        return str(body["id"])

    async def publish(self, marker: str) -> None:
        """Publish an event over AMQP as an application would (persistent, confirmed)."""
        exchange = await self.channel.get_exchange(self.topology.ingest_exchange.name)
        body = orjson.dumps({"type": "test.fault", "data": {"marker": marker}})
        message = aio_pika.Message(
            body, content_type="application/json", delivery_mode=aio_pika.DeliveryMode.PERSISTENT
        )
        await exchange.publish(message, "test.fault")

    async def delivered(self, marker: str) -> None:
        """Wait until the receiver got the event carrying `marker`."""
        await self.receiver.wait_for(
            lambda got: any(_marker(r.body) == marker for r in got), WAIT_S
        )

    def count(self, marker: str) -> int:
        return sum(1 for r in self.receiver.received if _marker(r.body) == marker)

    async def status(self, path: str) -> int:
        try:
            async with self.http.get(self.ops + path) as resp:
                return resp.status
        except aiohttp.ClientError:
            return 0

    async def metrics(self) -> str:
        async with self.http.get(self.ops + "/metrics") as resp:
            return await resp.text()

    async def until(self, check: Callable[[], Any], what: str) -> None:
        """Wait (generously) until the async `check()` is true."""
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            if self.task.done():
                raise AssertionError(f"the services stopped: {self.task.result()}")
            if await check():
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"never happened: {what}")

    async def ready(self) -> bool:
        return await self.status("/readyz") == 200

    async def not_ready(self) -> bool:
        return await self.status("/readyz") == 503


def _marker(body: bytes) -> str | None:
    try:
        return str(orjson.loads(body)["data"]["marker"])
    except (ValueError, KeyError, TypeError):
        return None


@asynccontextmanager
async def running_pipeline(
    settings: Settings,
    services: tuple[str, ...] = ("ingest", "fanout", "sender"),
    broker_url: str = AMQP_URL,
) -> AsyncIterator[Pipeline]:
    """Ingest, fanout and the sender in this process (`hookline all`), a receiver, and a
    broker channel of the test's own (on `broker_url`); stopped at the end and checked to
    exit 0."""
    receiver = Receiver()
    await receiver.start()
    stop = asyncio.Event()
    runs = {"ingest": run_ingest, "fanout": run_fanout, "sender": run_sender}
    components = [(name, runs[name]) for name in services]
    task = asyncio.create_task(serve(settings, "all", components, stop=stop))
    connection = await aio_pika.connect(broker_url)
    try:
        async with aiohttp.ClientSession() as http:
            channel = await connection.channel()
            pipeline = Pipeline(settings, topology_of(settings), http, receiver, channel, task)
            await pipeline.until(pipeline.ready, "the services are ready")
            yield pipeline
            stop.set()
            assert await asyncio.wait_for(task, WAIT_S) == 0
    finally:
        stop.set()
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        await connection.close()
        await receiver.close()
