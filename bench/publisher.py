"""Publishing bench events to `{ns}.ingest` over AMQP, with many publisher confirms in flight.

Each event carries its sequence number and the Unix time it was handed to the broker in
`data`, so the receiver can measure publish-to-receipt latency and count every delivery.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import aio_pika
import orjson
from aio_pika.abc import AbstractExchange

EVENT_TYPE = "bench.tick"
WARMUP_SEQ = -1
CONFIRM_WINDOW = 1024
"""Publishes awaiting their confirm at once: enough to keep the broker busy."""


def event_body(tag: str, seq: int, sent_at: float, tenant_id: str | None = None) -> bytes:
    """The event envelope of one bench event (CONTRACT section 2); its idempotency key is unique."""
    body: dict[str, object] = {
        "type": EVENT_TYPE,
        "id": f"{tag}-{seq}",
        "data": {"seq": seq, "sent_at": sent_at},
    }
    if tenant_id is not None:
        body["tenant_id"] = tenant_id
    return orjson.dumps(body)


def send_times(start: float, count: int, events_per_s: float | None) -> list[float]:
    """When each of `count` events is due: all at `start` without a rate, else evenly spaced."""
    if not events_per_s:
        return [start] * count
    return [start + i / events_per_s for i in range(count)]


@dataclass(frozen=True)
class PublishResult:
    count: int
    started_at: float
    last_confirm_at: float


class Publisher:
    """One confirmed channel to the broker, publishing to a namespace's ingest exchange."""

    def __init__(
        self,
        amqp_url: str,
        exchange_name: str,
        tag: str,
        tenant_of: Callable[[int], str | None] | None = None,
    ) -> None:
        """`tenant_of(seq)` is the tenant of event `seq` (none without it)."""
        self._tenant_of = tenant_of
        self._amqp_url = amqp_url
        self._exchange_name = exchange_name
        self._tag = tag
        self._connection: aio_pika.abc.AbstractConnection | None = None
        self._exchange: AbstractExchange | None = None

    async def open(self) -> None:
        self._connection = await aio_pika.connect(self._amqp_url, timeout=10)
        channel = await self._connection.channel(publisher_confirms=True)
        self._exchange = await channel.get_exchange(self._exchange_name, ensure=True)

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    async def publish_one(self, seq: int) -> None:
        """Publish one event and wait for its confirm."""
        assert self._exchange is not None, "open() first"
        tenant = self._tenant_of(seq) if self._tenant_of is not None else None
        body = event_body(self._tag, seq, time.time(), tenant)
        message = aio_pika.Message(
            body, content_type="application/json", delivery_mode=aio_pika.DeliveryMode.PERSISTENT
        )
        await self._exchange.publish(message, routing_key=EVENT_TYPE, timeout=30)

    async def publish(
        self,
        count: int,
        *,
        events_per_s: float | None = None,
        on_confirm: Callable[[], object] | None = None,
    ) -> PublishResult:
        """Publish events 0..count-1, at `events_per_s` or as fast as confirms allow.

        Up to CONFIRM_WINDOW publishes wait for their confirm at once; raises on a nack.
        """
        window = asyncio.Semaphore(CONFIRM_WINDOW)
        tasks: set[asyncio.Task[None]] = set()
        failures: list[BaseException] = []
        started_at = time.time()
        last_confirm_at = started_at

        def done(task: asyncio.Task[None]) -> None:
            nonlocal last_confirm_at
            tasks.discard(task)
            window.release()
            if task.cancelled() or task.exception() is not None:
                failures.append(task.exception() or asyncio.CancelledError())
                return
            last_confirm_at = time.time()
            if on_confirm is not None:
                on_confirm()

        for seq, due in enumerate(send_times(started_at, count, events_per_s)):
            delay = due - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await window.acquire()
            if failures:
                window.release()
                break
            task = asyncio.create_task(self.publish_one(seq), name=f"publish-{seq}")
            tasks.add(task)
            task.add_done_callback(done)
        if tasks:
            await asyncio.wait(tasks, timeout=120)
        if failures or tasks:
            raise RuntimeError(f"publishing failed: {failures[0] if failures else 'timed out'}")
        return PublishResult(count, started_at, last_confirm_at)
