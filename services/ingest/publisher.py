"""Everything ingest publishes, each publish awaited until the broker confirms it.

The channel is opened with publisher confirms and `on_return_raises`, and every publish is
`mandatory`: a message no queue would take raises instead of vanishing. Broker failures
become `BrokerUnavailable` here, the one place they are translated.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractExchange

from shared.amqp import json_message
from shared.errors import BrokerUnavailable
from shared.models import H_ERROR, DeliveryMessage, EventMessage
from shared.topology import SEND_ROUTING_KEY, Topology

H_REASON = "x-hookline-reason"
"""Header of a rejected message: the short reason label (the metric's `reason`)."""

_CONFIRM_TIMEOUT_S = 10.0
_ERROR_HEADER_MAX = 1000
_BROKER_ERRORS = (
    aio_pika.exceptions.AMQPError,
    aiormq.exceptions.AMQPError,
    ConnectionError,
    TimeoutError,
    RuntimeError,  # aio-pika's ChannelInvalidStateError while the channel reconnects
)


class Publisher:
    """Confirmed publishing to `{ns}.events`, `{ns}.ingest.rejected` and `{ns}.deliveries`."""

    def __init__(
        self,
        channel: AbstractChannel,
        topology: Topology,
        exchanges: dict[str, AbstractExchange],
    ) -> None:
        """`exchanges`: what `declare()` returned for the channel, by name."""
        self._channel = channel
        self._topology = topology
        self._events = exchanges[topology.events_exchange.name]
        self._deliveries = exchanges[topology.deliveries_exchange.name]

    async def publish_event(self, message: EventMessage) -> None:
        """Publish a stored event for fanout (routing key = its type)."""
        msg = json_message(message.body, headers=message.headers(), message_id=message.event_id)
        await self._confirmed(self._events, msg, message.event_type)

    async def publish_delivery(self, message: DeliveryMessage) -> None:
        """Hand a delivery to the sender's work queue."""
        msg = json_message(message.body, headers=message.headers(), message_id=message.delivery_id)
        await self._confirmed(self._deliveries, msg, SEND_ROUTING_KEY)

    async def reject(
        self, body: bytes, headers: dict[str, Any], *, reason: str, error: str
    ) -> None:
        """Park an unacceptable message in `{ns}.ingest.rejected`, saying why in its headers."""
        kept = {k: v for k, v in headers.items() if k not in (H_ERROR, H_REASON)}
        kept[H_ERROR] = error[:_ERROR_HEADER_MAX]
        kept[H_REASON] = reason
        msg = aio_pika.Message(body, headers=kept, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        await self._confirmed(
            self._channel.default_exchange, msg, self._topology.rejected_queue.name
        )

    async def _confirmed(
        self, exchange: AbstractExchange, message: aio_pika.Message, routing_key: str
    ) -> None:
        try:
            await asyncio.wait_for(
                exchange.publish(message, routing_key, mandatory=True), _CONFIRM_TIMEOUT_S
            )
        except _BROKER_ERRORS as exc:
            raise BrokerUnavailable(
                f"RabbitMQ did not confirm a publish to {exchange.name or 'the default exchange'}"
                f" ({type(exc).__name__})"
            ) from exc
