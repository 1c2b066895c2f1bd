"""One event in, one delivery per matching subscription out (issue 2, part 4).

For each event consumed from `{ns}.fanout`: match it against the subscription cache, write
its delivery rows (batched with other events' rows), publish its deliveries with publisher
confirms (one batch message for the matches, plain messages for parked subscriptions:
`services.fanout.publisher`), and only then ack the event. Every event ends acked after its
deliveries are durable, moved to `{ns}.fanout.rejected` with a reason, or requeued after a
backoff when Postgres or RabbitMQ is in trouble; none is dropped.

At least once: if fanout dies after publishing an event's deliveries but before its ack, the
broker hands the event out again, and its deliveries are published a second time. Their rows
are not duplicated (the delivery id is derived from the event and the subscription, and the
insert skips existing ids), and receivers deduplicate on `webhook-id` (CONTRACT section 4).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any

import aio_pika
import asyncpg
from aio_pika.abc import AbstractExchange, AbstractIncomingMessage

from services.fanout.deliveries import DeliveryRow
from services.fanout.publisher import DeliveryPublisher, Route
from shared import wire
from shared.amqp import publish_confirmed
from shared.batching import BatchWriter, WriterClosed
from shared.errors import BROKER_ERRORS, StorageUnavailable
from shared.ids import delivery_id
from shared.logging import get_logger
from shared.metrics import EVENTS_REJECTED, FANOUT_DELIVERIES
from shared.models import H_ERROR, EventMessage
from shared.retry import RetrySchedule
from shared.subscription_cache import SubscriptionCache
from shared.subscriptions import Subscription
from shared.topology import Topology

log = get_logger("fanout")

_BACKOFF_FIRST_S = 0.2
_BACKOFF_MAX_S = 10.0

_RETRYABLE: tuple[type[BaseException], ...] = (StorageUnavailable, WriterClosed, *BROKER_ERRORS)


class Router:
    """Handles the events of `{ns}.fanout`; `handle` is the consumer callback."""

    def __init__(
        self,
        *,
        cache: SubscriptionCache,
        writer: BatchWriter[DeliveryRow],
        publisher: DeliveryPublisher,
        default_exchange: AbstractExchange,
        rejected_queue: str,
        topology: Topology | None = None,
    ) -> None:
        """`topology` names the retry queues parked deliveries go to; without it none is
        parked."""
        self._cache = cache
        self._writer = writer
        self._publisher = publisher
        self._default = default_exchange
        self._rejected_queue = rejected_queue
        self._topology = topology
        self._schedule = RetrySchedule(topology.retry_delays_s) if topology else None
        self._failures = 0
        self._stopping = asyncio.Event()
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.storage_ok = True
        """False after a failed write until the next successful one (for readiness)."""

    async def handle(self, message: AbstractIncomingMessage) -> None:
        """Route one event message; always ends in ack, reject-to-queue or requeue."""
        self._inflight += 1
        self._idle.clear()
        try:
            await self._route(message)
        except Exception as exc:
            # A bug, not bad luck: park the event where it can be looked at and sent again,
            # rather than looping on it or leaving it unacked.
            log.error("event_handling_failed", message_id=message.message_id, exc_info=exc)
            await self._reject(message, "internal_error", f"{type(exc).__name__}: {exc}")
        finally:
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.set()

    async def drain(self, timeout_s: float) -> bool:
        """Wait for events in flight to finish; False when `timeout_s` ran out first."""
        self._stopping.set()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            log.warning("fanout_drain_timed_out", inflight=self._inflight)
            return False
        return True

    async def _route(self, message: AbstractIncomingMessage) -> None:
        kind = wire.kind_of(message.headers)
        if kind is not None:
            await self._route_format_2(message, kind)
            return
        try:
            event = EventMessage.from_amqp(message.headers, message.body)
        except ValueError as exc:
            await self._reject(message, "malformed", str(exc))
            return
        # Sees every subscription committed before the event was consumed, hence before it
        # was published: "create a subscription, then publish" never misses.
        try:
            await self._cache.sync()
        except StorageUnavailable as exc:
            self.storage_ok = False
            await self._retry_later(message, event.event_id, exc)
            return
        subscriptions = self._cache.match(event.event_type, event.tenant_id)
        if not subscriptions:
            await _settle(message.ack())
            return
        rows = [(delivery_id(event.event_id, s.id), event.event_id, s.id) for s in subscriptions]
        parked = self._parked(subscriptions)
        try:
            await self._writer.submit(rows)
            self.storage_ok = True
            await self._publisher.publish(event, rows, parked)
        except asyncpg.IntegrityConstraintViolationError as exc:
            # The event (or a subscription) is not stored: requeueing would loop forever.
            await self._reject(message, "not_stored", f"{type(exc).__name__}: {exc}")
            return
        except _RETRYABLE as exc:
            if isinstance(exc, StorageUnavailable):
                self.storage_ok = False
            await self._retry_later(message, event.event_id, exc)
            return
        self._failures = 0
        FANOUT_DELIVERIES.inc(len(rows))
        await _settle(message.ack())

    async def _route_format_2(self, message: AbstractIncomingMessage, kind: str) -> None:
        """Route a message carrying many events (`shared.wire`): one cache sync, one write of
        every delivery row, one burst of delivery messages, then one ack for all of them."""
        try:
            if kind != wire.EVENTS:
                raise ValueError(f"not an events message: {kind}")
            events = wire.decode_events(message.body)
        except ValueError as exc:
            await self._reject(message, "malformed", str(exc))
            return
        try:
            await self._cache.sync()
        except StorageUnavailable as exc:
            self.storage_ok = False
            await self._retry_later(message, events[0].event_id, exc)
            return
        routes = [self._routed(event) for event in events]
        routes = [r for r in routes if r.rows]
        try:
            routes = await self._write_rows(routes)
            self.storage_ok = True
            await self._publisher.publish_many(routes)
        except _RETRYABLE as exc:
            if isinstance(exc, StorageUnavailable):
                self.storage_ok = False
            await self._retry_later(message, events[0].event_id, exc)
            return
        self._failures = 0
        FANOUT_DELIVERIES.inc(sum(len(r.rows) for r in routes))
        await _settle(message.ack())

    def _routed(self, event: EventMessage) -> Route:
        subscriptions = self._cache.match(event.event_type, event.tenant_id)
        rows = [(delivery_id(event.event_id, s.id), event.event_id, s.id) for s in subscriptions]
        return Route(event, rows, self._parked(subscriptions) if subscriptions else None)

    async def _write_rows(self, routes: list[Route]) -> list[Route]:
        """Write every route's rows (one batch: each route is a group of the writer, so a row
        Postgres refuses fails only its own event); the routes whose rows are stored.

        An event whose rows are refused (not stored, or a subscription deleted meanwhile)
        moves alone to `{ns}.fanout.rejected` as a format 1 message, as it would have
        travelled alone; the others go on. Raises what should requeue the whole message.
        """
        results = await asyncio.gather(
            *(self._writer.submit(r.rows) for r in routes), return_exceptions=True
        )
        stored: list[Route] = []
        for route, result in zip(routes, results, strict=True):
            if isinstance(result, asyncpg.IntegrityConstraintViolationError):
                await self._reject_event(route.event, f"{type(result).__name__}: {result}")
            elif isinstance(result, BaseException):
                raise result
            else:
                stored.append(route)
        return stored

    async def _reject_event(self, event: EventMessage, detail: str) -> None:
        """Park one event of a format 2 message in `{ns}.fanout.rejected` (confirmed)."""
        headers = event.headers()
        headers[H_ERROR] = f"not_stored: {detail}"[:1000]
        copy = aio_pika.Message(
            event.body,
            headers=headers,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=event.event_id,
        )
        # Mandatory: unroutable raises, and the whole message is requeued rather than lost.
        await publish_confirmed(self._default, copy, self._rejected_queue)
        EVENTS_REJECTED.labels("fanout_not_stored").inc()
        log.warning("event_rejected", reason="not_stored", error=detail, event_id=event.event_id)

    def _parked(self, subscriptions: list[Subscription]) -> dict[str, str] | None:
        """Subscription id -> retry queue, for those parked now (see services.sender.park).

        The queue's delay is the time the park has left, rounded down to a queue delay (never
        below the shortest): the delivery comes back no later than the park ends, so a target
        parked briefly is not made to wait the next longer delay (5 min by default). One that
        comes back while its target is still stuck is simply deferred or parked again.
        """
        topology, schedule = self._topology, self._schedule
        if topology is None or schedule is None:
            return None
        parked: dict[str, str] | None = None
        now: datetime | None = None
        for sub in subscriptions:
            if sub.parked_until is None:
                continue
            now = now or datetime.now(UTC)
            remaining_s = (sub.parked_until - now).total_seconds()
            if remaining_s > 0:
                parked = parked or {}
                parked[sub.id] = topology.retry_queue(
                    schedule.queue_delay_at_most(remaining_s)
                ).name
        return parked

    async def _reject(self, message: AbstractIncomingMessage, reason: str, detail: str) -> None:
        """Move a message fanout cannot handle to `{ns}.fanout.rejected`, then ack it."""
        headers = dict(message.headers or {})
        headers[H_ERROR] = f"{reason}: {detail}"[:1000]
        copy = aio_pika.Message(
            message.body,
            headers=headers,
            content_type=message.content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message.message_id,
        )
        try:
            # Mandatory: with the rejected queue gone the event is requeued, not dropped.
            await publish_confirmed(self._default, copy, self._rejected_queue)
        except BROKER_ERRORS as exc:
            await self._retry_later(message, message.message_id, exc)
            return
        EVENTS_REJECTED.labels(f"fanout_{reason}").inc()
        log.warning("event_rejected", reason=reason, error=detail, message_id=message.message_id)
        await _settle(message.ack())

    async def _retry_later(
        self, message: AbstractIncomingMessage, event_id: str | None, exc: BaseException
    ) -> None:
        """Requeue after a backoff that grows while failures follow each other."""
        self._failures += 1
        delay_s = min(_BACKOFF_FIRST_S * 2 ** min(self._failures - 1, 10), _BACKOFF_MAX_S)
        log.warning(
            "event_requeued",
            event_id=event_id,
            error=f"{type(exc).__name__}: {exc}",
            retry_in_s=delay_s,
        )
        # Holding the message meanwhile keeps its prefetch slot: that is the backpressure.
        # A stop cuts the wait short, so shutdown is not held up by a sleeping retry.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), delay_s)
        await _settle(message.nack(requeue=True))


async def _settle(outcome: Any) -> None:
    """Await an ack or nack; when the channel is gone the broker redelivers by itself."""
    try:
        await outcome
    except BROKER_ERRORS as exc:
        log.warning("event_settle_failed", error=f"{type(exc).__name__}: {exc}")
