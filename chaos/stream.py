"""Steady streams of events, over AMQP with publisher confirms and over `POST /v1/events`.

A stream sends one event every 1/rate seconds whatever happens to the broker or the API, and
remembers which ones were confirmed (a broker confirm, or a `202`/`200`): those, and only
those, Hookline has promised to deliver. The AMQP stream reconnects by itself after a broker
outage, as a producer would; a publish that fails or is never confirmed is not retried (its
event is simply not counted as confirmed).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aio_pika
import aiohttp
from yarl import URL

from bench.publisher import EVENT_TYPE, event_body

CONFIRM_TIMEOUT_S = 15.0
WINDOW = 256
"""Sends awaiting their answer at once; beyond that the stream waits (a blocked broker)."""
RECONNECT_S = 0.5
HTTP_SEQ_BASE = 10_000_000
"""HTTP events are numbered from here, AMQP events from 0: one receiver tells them apart."""


class NotConfirmed(Exception):
    """The broker or the API refused an event; the message names how (`http_503`)."""


@dataclass
class StreamLog:
    """What a stream sent: each confirmed event's seq and send time, and why others failed."""

    source: str
    confirmed: dict[int, float] = field(default_factory=dict)
    failures: Counter[str] = field(default_factory=Counter)
    sent: int = 0


class Stream:
    """Calls `send(seq, sent_at)` at `rate` per second until stopped.

    A send that returns has been confirmed; one that raises has not (counted by its kind).
    """

    def __init__(
        self,
        source: str,
        send: Callable[[int, float], Awaitable[None]],
        rate: float,
        first_seq: int = 0,
    ) -> None:
        self.log = StreamLog(source)
        self._send = send
        self._interval_s = 1.0 / rate
        self._next_seq = first_seq
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"stream-{self.log.source}")

    async def stop(self) -> StreamLog:
        """Stop sending and wait for every send in flight to be answered or time out."""
        self._stop.set()
        if self._task is not None:
            await self._task
        return self.log

    async def _run(self) -> None:
        window = asyncio.Semaphore(WINDOW)
        tasks: set[asyncio.Task[None]] = set()
        due = time.monotonic()
        while not self._stop.is_set():
            await window.acquire()
            seq, self._next_seq = self._next_seq, self._next_seq + 1
            task = asyncio.create_task(self._one(seq, window))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            # A stream held back by a full window does not burst to catch up afterwards.
            due = max(due + self._interval_s, time.monotonic() - 1.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), max(0.0, due - time.monotonic()))
        if tasks:
            await asyncio.wait(tasks)

    async def _one(self, seq: int, window: asyncio.Semaphore) -> None:
        sent_at = time.time()
        self.log.sent += 1
        try:
            await self._send(seq, sent_at)
            self.log.confirmed[seq] = sent_at
        except NotConfirmed as exc:
            self.log.failures[str(exc)] += 1
        except Exception as exc:  # every failure is a fact of the run, counted by its kind
            self.log.failures[type(exc).__name__] += 1
        finally:
            window.release()


class AmqpSender:
    """Publishes to `{ns}.ingest` with confirms and `mandatory`, reconnecting after outages."""

    def __init__(self, amqp_url: str, exchange_name: str, tag: str) -> None:
        self._amqp_url = amqp_url
        self._exchange_name = exchange_name
        self._tag = tag
        self._connection: aio_pika.abc.AbstractConnection | None = None
        self._channel: aio_pika.abc.AbstractChannel | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None
        self._keeper: asyncio.Task[None] | None = None

    async def open(self) -> None:
        await self._connect()
        self._keeper = asyncio.create_task(self._keep_connected(), name="amqp-keeper")

    async def close(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
        if self._connection is not None and not self._connection.is_closed:
            with contextlib.suppress(Exception):
                await self._connection.close()

    async def _connect(self) -> None:
        # Built apart from `aio_pika.connect` so that a half-made connection (the broker still
        # booting) is closed here, not left to the garbage collector mid-run.
        connection = aio_pika.Connection(URL(self._amqp_url))
        try:
            await connection.connect(timeout=5)
            channel = await connection.channel(publisher_confirms=True)
            self._exchange = await channel.get_exchange(self._exchange_name, ensure=True)
        except BaseException:
            with contextlib.suppress(Exception):
                await connection.close()
            raise
        self._connection, self._channel = connection, channel

    def _usable(self) -> bool:
        connection, channel = self._connection, self._channel
        return not (
            connection is None or connection.is_closed or channel is None or channel.is_closed
        )

    async def _keep_connected(self) -> None:
        """Notice a closed connection or channel (the broker went away) and connect again."""
        while True:
            await asyncio.sleep(RECONNECT_S)
            if self._usable():
                continue
            self._exchange = None
            if self._connection is not None:
                with contextlib.suppress(Exception):
                    await self._connection.close()
            with contextlib.suppress(Exception):
                await self._connect()

    async def send(self, seq: int, sent_at: float) -> None:
        exchange = self._exchange
        if exchange is None:
            raise NotConfirmed("amqp_not_connected")
        message = aio_pika.Message(
            event_body(self._tag, seq, sent_at),
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        await exchange.publish(
            message, routing_key=EVENT_TYPE, mandatory=True, timeout=CONFIRM_TIMEOUT_S
        )


class HttpSender:
    """`POST /v1/events`: confirmed when the API answers `202` (or `200`, already known)."""

    def __init__(self, api_url: str, token: str, tag: str) -> None:
        self._url = f"{api_url}/v1/events"
        self._headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
        self._tag = tag
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        timeout = aiohttp.ClientTimeout(total=CONFIRM_TIMEOUT_S)
        self._session = aiohttp.ClientSession(timeout=timeout)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def send(self, seq: int, sent_at: float) -> None:
        assert self._session is not None, "open() first"
        body = event_body(self._tag, seq, sent_at)
        async with self._session.post(self._url, data=body, headers=self._headers) as resp:
            await resp.read()
            if resp.status not in (200, 202):
                raise NotConfirmed(f"http_{resp.status}")
