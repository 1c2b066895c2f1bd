"""Publishing an event's deliveries: one batch message (plus one per parked match), confirmed.

This is fanout's hot path (issue 6 asks for well over 5,000 deliveries/s from one core), so it
talks to aiormq's channel directly with ready-made AMQP properties instead of building an
aio-pika `Message` per delivery; the robust aio-pika channel still owns reconnection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aio_pika.abc import AbstractChannel
from aiormq import spec

from shared import wire
from shared.amqp import Outgoing, delivery_properties, publish_burst
from shared.models import (
    H_ACCEPTED_AT,
    H_ATTEMPT,
    H_SUBSCRIPTIONS,
    DeliveryMessage,
    EventMessage,
    batch_message_id,
)
from shared.stores.deliveries import DeliveryRow
from shared.topology import SEND_ROUTING_KEY

PUBLISH_TIMEOUT_S = 30.0
MAX_BATCH_SUBSCRIPTIONS = 1000
"""Subscriptions listed in one batch message: ~31 KB of header, well inside one frame (a
header that does not fit closes the connection: `frame_too_large`)."""
_PERSISTENT = 2
_CONTENT_TYPE = "application/json"


@dataclass(frozen=True, slots=True)
class EventDeliveries:
    """One event, its delivery rows, and where its parked matches go (see `publish`)."""

    event: EventMessage
    rows: list[DeliveryRow]
    parked: Mapping[str, str] | None = None


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
        messages of up to `wire.MAX_ITEMS` deliveries; parked ones as plain messages to their
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
            for route in routes:
                parked = route.parked or {}
                for dlv_id, _, subscription_id in route.rows:
                    msg = _first_attempt(route.event, dlv_id, subscription_id)
                    retry_queue = parked.get(subscription_id)
                    if retry_queue is None:
                        straight.append(msg)
                    else:
                        props = delivery_properties(msg)
                        publishes.append(self._send(msg.body, props, retry_queue))
            sizes = _body_sizes(straight)
            for part in wire.chunks(sizes):
                chunk = [straight[i] for i in part]
                properties = spec.Basic.Properties(
                    content_type=wire.CONTENT_TYPE,
                    delivery_mode=_PERSISTENT,
                    headers=wire.headers_for(wire.DELIVERIES, len(chunk)),
                    message_id=f"deliveries.{chunk[0].delivery_id}",
                )
                body = wire.encode_deliveries(chunk)
                publishes.append(self._send(body, properties, None))
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
        # The layout of `DeliveryMessage.properties()`: ids in basic properties, a two-entry
        # header table (encoding table entries was ~9% of fanout), shared by the event's rows.
        headers: dict[str, Any] = {H_ATTEMPT: 1, H_ACCEPTED_AT: event.accepted_at}
        publishes = []
        batched = [s for _, _, s in rows if s not in parked]
        if len(batched) > 1:
            # The rows going straight to the sender travel as batch messages
            # (`shared.models.deliveries_of`): one publish, one queue entry, one consume and
            # one ack for the event instead of one each per match. A header must fit in one
            # AMQP frame (128 KiB by default), hence at most MAX_BATCH_SUBSCRIPTIONS each.
            for number, start in enumerate(range(0, len(batched), MAX_BATCH_SUBSCRIPTIONS)):
                chunk = batched[start : start + MAX_BATCH_SUBSCRIPTIONS]
                properties = spec.Basic.Properties(
                    content_type=_CONTENT_TYPE,
                    delivery_mode=_PERSISTENT,
                    headers={**headers, H_SUBSCRIPTIONS: " ".join(chunk)},
                    message_id=batch_message_id(event.event_id, number),
                    correlation_id=event.event_id,
                    message_type=event.event_type,
                )
                publishes.append(self._send(event.body, properties, None))
        for dlv_id, _, subscription_id in rows:
            retry_queue = parked.get(subscription_id)
            if retry_queue is None and len(batched) > 1:
                continue
            properties = spec.Basic.Properties(
                content_type=_CONTENT_TYPE,
                delivery_mode=_PERSISTENT,
                headers=headers,
                message_id=dlv_id,
                correlation_id=event.event_id,
                message_type=event.event_type,
                app_id=subscription_id,
            )
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
