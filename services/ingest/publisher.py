"""Everything ingest publishes, each publish awaited until the broker confirms it.

A batch of events goes out as one burst whose confirms are awaited together.

The channel is opened with publisher confirms and `on_return_raises`, and every publish is
`mandatory`: a message no queue would take raises instead of vanishing. Broker failures
become `BrokerUnavailable` here, the one place they are translated.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractExchange
from aiormq import spec

from shared.errors import BrokerUnavailable
from shared.logging import get_logger
from shared.topology import SEND_ROUTING_KEY, Topology
from shared.wire import batches
from shared.wire.messages import H_ERROR, H_REASON, DeliveryMessage, EventMessage
from shared.wire.properties import (
    delivery_json_message,
    event_json_message,
    event_properties,
    events_properties,
    rejected_copy,
)
from shared.wire.publish import publish_burst, publish_confirmed

log = get_logger("ingest_publisher")

_CONFIRM_TIMEOUT_S = 10.0
BLOCKED_GIVE_UP_S = 0.5
"""How long a burst waits for confirms once RabbitMQ blocks the connection."""
_BLOCKED_POLL_S = 0.1
_ERROR_HEADER_MAX = 1000
_BROKER_ERRORS = (
    aio_pika.exceptions.AMQPError,
    aiormq.exceptions.AMQPError,
    ConnectionError,
    TimeoutError,
    RuntimeError,  # aio-pika's ChannelInvalidStateError while the channel reconnects
)


class BlockedByBroker(ConnectionError):
    """RabbitMQ blocks our publishes (memory or disk alarm): nothing can be confirmed now."""

    def __init__(self) -> None:
        super().__init__("RabbitMQ blocks publishes (resource alarm)")


class Publisher:
    """Confirmed publishing to `{ns}.events`, `{ns}.ingest.rejected` and `{ns}.deliveries`."""

    def __init__(
        self,
        channel: AbstractChannel,
        topology: Topology,
        exchanges: dict[str, AbstractExchange],
        blocked: Callable[[], bool] = lambda: False,
        *,
        batch: bool = False,
    ) -> None:
        """`exchanges`: what `declare()` returned for the channel, by name; `blocked` says
        whether RabbitMQ blocks the channel's connection (a resource alarm); `batch`: events
        go to fanout many per message (wire format 2, `HOOKLINE_BATCH_MESSAGES`)."""
        self.blocked = blocked
        self._batch = batch
        self._channel = channel
        self._topology = topology
        self._events = exchanges[topology.events_exchange.name]
        self._deliveries = exchanges[topology.deliveries_exchange.name]

    async def publish_event(self, message: EventMessage) -> None:
        """Publish a stored event for fanout (routing key = its type)."""
        await self._confirmed(self._events, event_json_message(message), message.event_type)

    async def publish_events(self, messages: list[EventMessage]) -> list[BrokerUnavailable | None]:
        """Publish stored events for fanout at once; per message None, or why it was not confirmed.

        Once any message may have gone out this never raises: a failure of one message,
        whatever its kind, is that message's BrokerUnavailable.

        One `shared.wire.publish.publish_burst` (straight on aiormq with ready-made properties)
        under one deadline for the whole batch.
        """
        if not messages:
            return []
        if self.blocked():
            return [self._unconfirmed(self._events, BlockedByBroker())] * len(messages)
        if self._batch:
            parts = list(batches.chunks([len(m.body) for m in messages]))
            burst = [_batch_publish([messages[i] for i in part]) for part in parts]
        else:
            parts = [range(i, i + 1) for i in range(len(messages))]
            burst = [_plain_publish(m) for m in messages]
        try:
            results = await self._confirm_unless_blocked(
                publish_burst(self._channel, self._events.name, burst)
            )
        except _BROKER_ERRORS as exc:
            return [self._unconfirmed(self._events, exc)] * len(messages)
        # Each event shares the fate of the message that carried it.
        outcomes: list[BrokerUnavailable | None] = [None] * len(messages)
        for part, result in zip(parts, results, strict=True):
            outcome = self._outcome(result)
            for i in part:
                outcomes[i] = outcome
        return outcomes

    async def _confirm_unless_blocked(
        self, burst: Coroutine[Any, Any, list[BaseException | None]]
    ) -> list[BaseException | None]:
        """Await the burst's confirms within the confirm timeout, but give up within
        BLOCKED_GIVE_UP_S once the broker blocks the connection: its confirms would only
        come after the alarm, and callers (the API) must hear 503 at once."""
        task = asyncio.ensure_future(burst)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _CONFIRM_TIMEOUT_S
        blocked_since: float | None = None
        try:
            while True:
                left = deadline - loop.time()
                if left <= 0:
                    raise TimeoutError("no confirm within the timeout")
                done, _ = await asyncio.wait({task}, timeout=min(left, _BLOCKED_POLL_S))
                if done:
                    return task.result()
                if not self.blocked():
                    blocked_since = None
                    continue
                blocked_since = blocked_since or loop.time()
                if loop.time() - blocked_since >= BLOCKED_GIVE_UP_S:
                    raise BlockedByBroker()
        finally:
            if not task.done():
                task.cancel()

    def _outcome(self, result: BaseException | None) -> BrokerUnavailable | None:
        if result is None or isinstance(result, BrokerUnavailable):
            return result
        if not isinstance(result, _BROKER_ERRORS):
            # A bug rather than an outage, but other events of the batch may already be on
            # {ns}.events: raising would fail their callers too, so this event alone is
            # reported unconfirmed (its caller retries; the idempotency key holds).
            log.error(
                "event_publish_failed",
                error_type=type(result).__name__,
                exc_info=(type(result), result, result.__traceback__),
            )
        return self._unconfirmed(self._events, result)

    async def publish_delivery(self, message: DeliveryMessage) -> None:
        """Hand a delivery to the sender's work queue."""
        await self._confirmed(self._deliveries, delivery_json_message(message), SEND_ROUTING_KEY)

    async def reject(
        self, body: bytes, headers: dict[str, Any], *, reason: str, error: str
    ) -> None:
        """Reject an unacceptable message into `{ns}.ingest.rejected`, saying why in its headers."""
        kept = {k: v for k, v in headers.items() if k not in (H_ERROR, H_REASON)}
        kept[H_ERROR] = error[:_ERROR_HEADER_MAX]
        kept[H_REASON] = reason
        await self._confirmed(
            self._channel.default_exchange,
            rejected_copy(body, kept),
            self._topology.rejected_queue.name,
        )

    async def _confirmed(
        self, exchange: AbstractExchange, message: aio_pika.Message, routing_key: str
    ) -> None:
        if self.blocked():
            # No confirm would come before the alarm clears: say so now (API: 503).
            raise self._unconfirmed(exchange, BlockedByBroker())
        try:
            await publish_confirmed(exchange, message, routing_key, timeout_s=_CONFIRM_TIMEOUT_S)
        except _BROKER_ERRORS as exc:
            raise self._unconfirmed(exchange, exc) from exc

    @staticmethod
    def _unconfirmed(exchange: AbstractExchange, exc: BaseException) -> BrokerUnavailable:
        error = BrokerUnavailable(
            f"RabbitMQ did not confirm a publish to {exchange.name or 'the default exchange'}"
            f" ({type(exc).__name__})"
        )
        error.__cause__ = exc
        return error


def _plain_publish(m: EventMessage) -> tuple[bytes, str, spec.Basic.Properties]:
    """Format 1: one event, its type as the routing key, its fields as headers."""
    return m.body, m.event_type, event_properties(m)


def _batch_publish(part: list[EventMessage]) -> tuple[bytes, str, spec.Basic.Properties]:
    """Format 2: the events of `part` in one message (`shared.wire.batches`)."""
    return batches.encode_events(part), batches.EVENTS_ROUTING_KEY, events_properties(part)
