"""One event in, one delivery per matching subscription out (issue 2, part 4).

For each event consumed from `{ns}.fanout`: match it against the subscription cache, write
its delivery rows (batched with other events' rows), publish its deliveries with publisher
confirms (one batch message for the matches, plain messages for parked subscriptions:
`services.fanout.publisher`), and only then return, which acks the event (the ack policy is
`shared.consuming`'s). Every event ends acked after its deliveries are durable or after it
was moved to `{ns}.fanout.rejected` with a reason; when Postgres or RabbitMQ is in trouble
`handle` raises and the runtime holds the event and tries again; none is dropped.

At least once: if fanout dies after publishing an event's deliveries but before its ack, the
broker hands the event out again, and its deliveries are published a second time. Their rows
are not duplicated (the delivery id is derived from the event and the subscription, and the
insert skips existing ids), and receivers deduplicate on `webhook-id` (CONTRACT section 4).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime

import asyncpg
from aio_pika.abc import AbstractExchange

from services.fanout.publisher import DeliveryPublisher, EventDeliveries
from shared.batching import BatchWriter, WriterClosed
from shared.errors import BROKER_ERRORS, StorageUnavailable
from shared.ids import delivery_id
from shared.inbound import Inbound
from shared.logging import get_logger
from shared.metrics import EVENTS_REJECTED, FANOUT_DELIVERIES
from shared.retry import RetrySchedule
from shared.routing_cache import RoutingCache
from shared.stores.deliveries import DeliveryRow
from shared.subscriptions import Route
from shared.topology import Topology
from shared.wire import batches
from shared.wire.messages import H_ERROR, EventMessage
from shared.wire.properties import event_json_message, rejected_copy
from shared.wire.publish import publish_confirmed

log = get_logger("fanout")

_RETRYABLE: tuple[type[BaseException], ...] = (StorageUnavailable, WriterClosed, *BROKER_ERRORS)


class Router:
    """Handles the events of `{ns}.fanout`; `handle` is the consumer callback."""

    def __init__(
        self,
        *,
        cache: RoutingCache,
        writer: BatchWriter[DeliveryRow, set[str]],
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
        self.storage_ok = True
        """False after a failed write until the next successful one (for readiness)."""

    async def handle(self, message: Inbound) -> None:
        """Route one event message; returns once it may be acked (deliveries durable, or the
        event rejected to its queue), raises an outage (StorageUnavailable, a broker error)
        for the runtime to hold it and try again."""
        try:
            await self._route(message)
        except _RETRYABLE:
            raise
        except Exception as exc:
            # A bug, not bad luck: reject the event to where it can be looked at and sent again,
            # rather than looping on it or leaving it unacked.
            log.error("event_handling_failed", message_id=message.message_id, exc_info=exc)
            await self._reject(message, "internal_error", f"{type(exc).__name__}: {exc}")

    async def _route(self, message: Inbound) -> None:
        kind = batches.kind_of(message.headers)
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
        key = (event.tenant_id, event.event_type)
        try:
            subscriptions = list((await self._cache.current([key]))[key])
        except StorageUnavailable as exc:
            self.storage_ok = False
            await self._retry_later(message, event.event_id, exc)
            return
        if not subscriptions:
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
        FANOUT_DELIVERIES.inc(len(rows))

    async def _route_format_2(self, message: Inbound, kind: str) -> None:
        """Route a message carrying many events (`shared.wire.batches`): one routing look-up,
        one write of every delivery row, one burst of delivery messages; returns once all of
        it is durable (one ack for all of them, by the runtime)."""
        try:
            if kind != batches.EVENTS:
                raise ValueError(f"not an events message: {kind}")
            events = batches.decode_events(message.body)
        except ValueError as exc:
            await self._reject(message, "malformed", str(exc))
            return
        keys = list({(e.tenant_id, e.event_type) for e in events})
        try:
            # One round trip for every event of the message, with the same freshness as a
            # single event's (see `_route`).
            found = await self._cache.current(keys)
        except StorageUnavailable as exc:
            self.storage_ok = False
            await self._retry_later(message, events[0].event_id, exc)
            return
        routes = [self._routed(e, list(found[(e.tenant_id, e.event_type)])) for e in events]
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
        FANOUT_DELIVERIES.inc(sum(len(r.rows) for r in routes))

    def _routed(self, event: EventMessage, subscriptions: list[Route]) -> EventDeliveries:
        rows = [(delivery_id(event.event_id, s.id), event.event_id, s.id) for s in subscriptions]
        return EventDeliveries(event, rows, self._parked(subscriptions) if subscriptions else None)

    async def _write_rows(self, routes: list[EventDeliveries]) -> list[EventDeliveries]:
        """Write every route's rows (one batch: each route is a group of the writer, so a row
        Postgres refuses fails only its own event); the routes whose rows are stored.

        An event whose rows are refused (not stored, or a subscription deleted meanwhile)
        moves alone to `{ns}.fanout.rejected` as a format 1 message, as it would have
        travelled alone; the others go on. Raises what should requeue the whole message.
        """
        results = await asyncio.gather(
            *(self._writer.submit(r.rows) for r in routes), return_exceptions=True
        )
        stored: list[EventDeliveries] = []
        for route, result in zip(routes, results, strict=True):
            if isinstance(result, asyncpg.IntegrityConstraintViolationError):
                await self._reject_event(route.event, f"{type(result).__name__}: {result}")
            elif isinstance(result, BaseException):
                raise result
            else:
                inserted = result or set()
                fresh = all(dlv_id in inserted for dlv_id, _, _ in route.rows)
                stored.append(replace(route, fresh=fresh))
        return stored

    async def _reject_event(self, event: EventMessage, detail: str) -> None:
        """Reject one event of a format 2 message into `{ns}.fanout.rejected` (confirmed)."""
        copy = event_json_message(event, extra_headers={H_ERROR: f"not_stored: {detail}"[:1000]})
        # Mandatory: unroutable raises, and the whole message is requeued rather than lost.
        await publish_confirmed(self._default, copy, self._rejected_queue)
        EVENTS_REJECTED.labels("fanout_not_stored").inc()
        log.warning("event_rejected", reason="not_stored", error=detail, event_id=event.event_id)

    def _parked(self, subscriptions: list[Route]) -> dict[str, str] | None:
        """Subscription id -> retry queue, for those parked now (see services.sender.park).

        The queue's delay is the time the park has left, rounded down to a queue delay (never
        below the shortest): the delivery comes back no later than the park ends, so a target
        parked briefly is not made to wait the next longer delay (5 min by default). One that
        comes back while its target is still stuck is simply deferred, or its target parked again.
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

    async def _reject(self, message: Inbound, reason: str, detail: str) -> None:
        """Move a message fanout cannot handle to `{ns}.fanout.rejected`, then ack it."""
        headers = dict(message.headers or {})
        headers[H_ERROR] = f"{reason}: {detail}"[:1000]
        copy = rejected_copy(
            message.body,
            headers,
            content_type=message.content_type,
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

    @staticmethod
    async def _retry_later(message: Inbound, event_id: str | None, exc: BaseException) -> None:
        """Hand the outage to the runtime, which holds the event and tries it again."""
        log.warning("event_held", event_id=event_id, error=f"{type(exc).__name__}: {exc}")
        raise exc
