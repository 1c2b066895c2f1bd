"""Publishing an event's deliveries: one batch message (plus one per parked match), confirmed.

This is fanout's hot path (issue 6 asks for well over 5,000 deliveries/s from one core), so it
talks to aiormq's channel directly with ready-made AMQP properties instead of building an
aio-pika `Message` per delivery; the robust aio-pika channel still owns reconnection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

from aio_pika.abc import AbstractChannel
from aiormq import spec

from shared.stores.deliveries import DeliveryRow
from shared.topology import SEND_ROUTING_KEY
from shared.wire import batches
from shared.wire.messages import DeliveryMessage, EventMessage
from shared.wire.properties import (
    deliveries_properties,
    delivery_properties,
    event_deliveries_properties,
    first_attempt_headers,
    first_attempt_properties,
)
from shared.wire.publish import PUBLISH_TIMEOUT_S, Outgoing, publish_burst

MAX_BATCH_SUBSCRIPTIONS = 1000
"""Subscriptions listed in one batch message: ~31 KB of header, well inside one frame (a
header that does not fit closes the connection: `frame_too_large`)."""


@dataclass(frozen=True, slots=True)
class EventDeliveries:
    """One event, its delivery rows, and where its parked matches go (see `publish`)."""

    event: EventMessage
    rows: list[DeliveryRow]
    parked: Mapping[str, str] | None = None
    fresh: bool = False
    """Every row was inserted just now: none of its deliveries was published before."""


class DeliveryPublisher:
    """Publishes delivery messages (attempt 1) to the deliveries exchange with confirms.

    The channel must have publisher confirms on. With `batch` (`HOOKLINE_BATCH_MESSAGES`)
    `publish_many` puts the deliveries of many events into one message (wire format 2).
    """

    def __init__(
        self, channel: AbstractChannel, exchange_name: str, *, batch: bool = False
    ) -> None:
        self._channel = channel
        self._exchange_name = exchange_name
        self._batch = batch

    async def publish_many(self, routes: list[EventDeliveries]) -> None:
        """Publish the deliveries of many events; returns once every message was confirmed.

        With `batch` the deliveries not parked, whatever their event, travel in format 2
        messages of up to `batches.MAX_ITEMS` deliveries; parked ones as plain messages to their
        retry queue. Without it each event is published as `publish` does. Raises as
        `publish` does; publishing them all again is then safe.
        """
        if not routes:
            return
        async with asyncio.timeout(PUBLISH_TIMEOUT_S):
            if not self._batch:
                await asyncio.gather(
                    *(self._publish(r.event, r.rows, r.parked or {}) for r in routes)
                )
                return
            publishes: list[Outgoing] = []
            straight: list[DeliveryMessage] = []
            fresh: list[bool] = []
            for route in routes:
                parked = route.parked or {}
                for dlv_id, _, subscription_id in route.rows:
                    msg = _first_attempt(route.event, dlv_id, subscription_id)
                    retry_queue = parked.get(subscription_id)
                    if retry_queue is None:
                        straight.append(msg)
                        fresh.append(route.fresh)
                    else:
                        props = delivery_properties(msg)
                        publishes.append(self._send(msg.body, props, retry_queue))
            sizes = _body_sizes(straight)
            for part in batches.chunks(sizes):
                chunk = [straight[i] for i in part]
                body = batches.encode_deliveries(chunk)
                props = deliveries_properties(chunk, fresh=all(fresh[i] for i in part))
                publishes.append(self._send(body, props, None))
            await self._confirmed(publishes)

    async def publish(
        self, event: EventMessage, rows: list[DeliveryRow], parked: Mapping[str, str] | None = None
    ) -> None:
        """Publish the rows' deliveries; returns once the broker confirmed every message.

        The rows not parked go to the sender's work queue as one batch message when there are
        several (one plain delivery message when there is one).

        `parked` maps the subscription id of a parked row to the retry queue it goes to
        instead of the sender's work queue (through the default exchange); it comes back to
        the work queue when that queue's delay ran out, as attempt 1.

        Raises BrokerUnavailable (or the AMQP error) when any is not confirmed; the caller
        then publishes them all again, which is safe as each keeps its delivery id.
        """
        async with asyncio.timeout(PUBLISH_TIMEOUT_S):
            await self._publish(event, rows, parked or {})

    async def _publish(
        self, event: EventMessage, rows: list[DeliveryRow], parked: Mapping[str, str]
    ) -> None:
        # One header table for the event's messages (see `shared.wire.properties`).
        headers = first_attempt_headers(event)
        publishes = []
        batched = [s for _, _, s in rows if s not in parked]
        if len(batched) > 1:
            # The rows going straight to the sender travel as batch messages
            # (`shared.wire.messages.deliveries_of`): one publish, one queue entry, one consume
            # and one ack for the event instead of one each per match. A header must fit in one
            # AMQP frame (128 KiB by default), hence at most MAX_BATCH_SUBSCRIPTIONS each.
            for number, start in enumerate(range(0, len(batched), MAX_BATCH_SUBSCRIPTIONS)):
                chunk = batched[start : start + MAX_BATCH_SUBSCRIPTIONS]
                properties = event_deliveries_properties(event, chunk, number)
                publishes.append(self._send(event.body, properties, None))
        for dlv_id, _, subscription_id in rows:
            retry_queue = parked.get(subscription_id)
            if retry_queue is None and len(batched) > 1:
                continue
            properties = first_attempt_properties(event, dlv_id, subscription_id, headers)
            publishes.append(self._send(event.body, properties, retry_queue))
        # No timeout per message: one deadline for the event (above) costs far less.
        await self._confirmed(publishes)

    @staticmethod
    def _send(body: bytes, properties: spec.Basic.Properties, retry_queue: str | None) -> Outgoing:
        """To the work queue, or to `retry_queue` (through the default exchange)."""
        if retry_queue is None:
            return Outgoing(body, SEND_ROUTING_KEY, properties)
        return Outgoing(body, retry_queue, properties, exchange="")

    async def _confirmed(self, publishes: list[Outgoing]) -> None:
        """Publish them all; raise the first failure (BrokerUnavailable for a non-ack).

        Mandatory: a deliveries queue deleted by hand must fail the publish (the event is
        then requeued), not drop the deliveries: a return is not an ack. Waits for the
        robust connection while it reconnects, within the caller's deadline.
        """
        for failure in await publish_burst(self._channel, self._exchange_name, publishes):
            if failure is not None:
                raise failure


def _first_attempt(event: EventMessage, dlv_id: str, subscription_id: str) -> DeliveryMessage:
    return DeliveryMessage(
        delivery_id=dlv_id,
        event_id=event.event_id,
        subscription_id=subscription_id,
        event_type=event.event_type,
        body=event.body,
        accepted_at=event.accepted_at,
    )


def _body_sizes(deliveries: list[DeliveryMessage]) -> list[int]:
    """Body bytes each delivery adds to a format 2 message: an event's body counts once."""
    seen: set[str] = set()
    sizes = []
    for d in deliveries:
        sizes.append(0 if d.event_id in seen else len(d.body))
        seen.add(d.event_id)
    return sizes
