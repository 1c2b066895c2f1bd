"""A consumed message as `shared.consuming` hands it to a handler: aiormq's, read lazily.

aio-pika's `IncomingMessage` decodes every property of every message up front (expiration,
timestamp, priority and ten more) and aio-pika runs each callback in a second task: together
about 25 us per message, which at one event per message was the largest single cost of
ingest's consume (issue 11). The consumers only read the body, the headers and a few
properties, so they get this instead: the frame's own fields, nothing copied.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiormq.abc import AbstractChannel, DeliveredMessage


class Inbound:
    """One delivered message; settle it through `shared.acks` or `nack`."""

    __slots__ = ("_properties", "body", "channel", "delivery_tag", "redelivered", "routing_key")

    def __init__(self, delivered: DeliveredMessage) -> None:
        self.body: bytes = delivered.body
        self.channel: AbstractChannel = delivered.channel
        frame = delivered.delivery
        self.delivery_tag: int = getattr(frame, "delivery_tag", 0) or 0
        self.redelivered: bool = bool(getattr(frame, "redelivered", False))
        self.routing_key: str = getattr(frame, "routing_key", "") or ""
        self._properties = delivered.header.properties

    @property
    def headers(self) -> Mapping[str, Any]:
        return self._properties.headers or {}

    @property
    def message_id(self) -> str | None:
        return self._properties.message_id

    @property
    def correlation_id(self) -> str | None:
        return self._properties.correlation_id

    @property
    def type(self) -> str | None:
        return self._properties.message_type

    @property
    def app_id(self) -> str | None:
        return self._properties.app_id

    @property
    def content_type(self) -> str | None:
        return self._properties.content_type

    async def nack(self, requeue: bool = True) -> None:
        """Give the message back (`requeue`) or drop it to the queue's dead-letter exchange."""
        await self.channel.basic_nack(self.delivery_tag, requeue=requeue)
