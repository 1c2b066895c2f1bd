"""Wire format 1: one event, one delivery, or one event's first deliveries per message; every
header name; reading such messages back (their properties are built by `shared.wire.properties`).

A delivery message's body is the exact webhook body the receiver gets, built once by fanout;
what the sender needs besides travels in basic properties and two headers, so the sender never
parses the body.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from shared.ids import delivery_id

# Header names.
H_DELIVERY_ID = "x-hookline-delivery-id"
H_EVENT_ID = "x-hookline-event-id"
H_SUBSCRIPTION_ID = "x-hookline-subscription-id"
H_EVENT_TYPE = "x-hookline-event-type"
H_TENANT_ID = "x-hookline-tenant-id"
H_ATTEMPT = "x-hookline-attempt"
H_ACCEPTED_AT = "x-hookline-accepted-at"
H_SUBSCRIPTIONS = "x-hookline-subscriptions"
"""Of a batch message: the space-separated ids of the subscriptions it is delivered to."""
H_DEFERRALS = "x-hookline-deferrals"
"""How many times in a row a delivery was deferred because its target had no free slot."""
H_ERROR = "x-hookline-error"
"""Of a rejected or dead message: why it is there."""
H_REASON = "x-hookline-reason"
"""Of a rejected message: the short reason label (the metric's `reason`)."""


class ConsumedMessage(Protocol):
    """What `DeliveryMessage.from_message` reads of a consumed AMQP message (aio-pika's)."""

    @property
    def body(self) -> bytes: ...
    @property
    def headers(self) -> Mapping[str, Any] | None: ...
    @property
    def message_id(self) -> str | None: ...
    @property
    def correlation_id(self) -> str | None: ...
    @property
    def type(self) -> str | None: ...
    @property
    def app_id(self) -> str | None: ...


def _field(headers: Mapping[str, Any], name: str, prop: str | None) -> str:
    value = headers.get(name, prop)
    if value is None:
        raise ValueError(f"delivery message lacks header {name} (or its property)")
    return str(value)


@dataclass(frozen=True, slots=True)
class DeliveryMessage:
    """One delivery of one event to one subscription, as it travels between fanout and sender."""

    delivery_id: str
    event_id: str
    subscription_id: str
    event_type: str
    body: bytes
    attempt: int = 1
    """The number of the attempt this message will make (1 for the first)."""
    accepted_at: float = 0.0
    """Unix seconds when Hookline accepted the event, for the end-to-end latency."""

    def headers(self) -> dict[str, Any]:
        """The header table of a delivery message: the attempt and accepted-at only.

        The ids and the type travel in basic properties (`properties()`), which cost far less
        to encode and decode than table entries on the fanout -> sender hot path.
        """
        return {H_ATTEMPT: self.attempt, H_ACCEPTED_AT: self.accepted_at}

    def readable_headers(self) -> dict[str, Any]:
        """Every field as a header, for messages people inspect (the dead queue)."""
        return {
            H_DELIVERY_ID: self.delivery_id,
            H_EVENT_ID: self.event_id,
            H_SUBSCRIPTION_ID: self.subscription_id,
            H_EVENT_TYPE: self.event_type,
            **self.headers(),
        }

    def properties(self) -> dict[str, Any]:
        """The AMQP basic properties that carry this delivery, `headers` included.

        message_id = delivery id, correlation_id = event id, type = event type,
        app_id = subscription id. Pass them as keyword arguments to `aio_pika.Message`.
        """
        return {
            "message_id": self.delivery_id,
            "correlation_id": self.event_id,
            "type": self.event_type,
            "app_id": self.subscription_id,
            "headers": self.headers(),
        }

    @classmethod
    def from_message(cls, message: ConsumedMessage) -> DeliveryMessage:
        """Rebuild from a consumed message (see `from_amqp`)."""
        return cls.from_amqp(
            dict(message.headers or {}),
            message.body,
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            type=message.type,
            app_id=message.app_id,
        )

    @classmethod
    def from_amqp(
        cls,
        headers: dict[str, Any],
        body: bytes,
        *,
        message_id: str | None = None,
        correlation_id: str | None = None,
        type: str | None = None,
        app_id: str | None = None,
    ) -> DeliveryMessage:
        """Rebuild from a message's headers and basic properties.

        A field found as a header wins over its property: messages published before the ids
        moved to properties, and dead-queue copies, carry them as headers. Raises ValueError
        naming the header when a field is in neither.
        """
        return cls(
            delivery_id=_field(headers, H_DELIVERY_ID, message_id),
            event_id=_field(headers, H_EVENT_ID, correlation_id),
            subscription_id=_field(headers, H_SUBSCRIPTION_ID, app_id),
            event_type=_field(headers, H_EVENT_TYPE, type),
            body=body,
            attempt=int(headers.get(H_ATTEMPT, 1)),
            accepted_at=float(headers.get(H_ACCEPTED_AT, 0.0)),
        )

    def next_attempt(self) -> DeliveryMessage:
        return replace(self, attempt=self.attempt + 1)


@dataclass(frozen=True, slots=True)
class EventMessage:
    """A stored event as ingest publishes it on `{ns}.events` (routing key = its type).

    The body is already the webhook body, so fanout copies it into each delivery untouched.
    """

    event_id: str
    event_type: str
    tenant_id: str | None
    body: bytes
    accepted_at: float

    def headers(self) -> dict[str, Any]:
        headers: dict[str, Any] = {
            H_EVENT_ID: self.event_id,
            H_EVENT_TYPE: self.event_type,
            H_ACCEPTED_AT: self.accepted_at,
        }
        if self.tenant_id is not None:
            headers[H_TENANT_ID] = self.tenant_id
        return headers

    @classmethod
    def from_amqp(cls, headers: Mapping[str, Any], body: bytes) -> EventMessage:
        """Rebuild from a consumed message; raises ValueError when a header is missing."""
        try:
            tenant = headers.get(H_TENANT_ID)
            return cls(
                event_id=str(headers[H_EVENT_ID]),
                event_type=str(headers[H_EVENT_TYPE]),
                tenant_id=None if tenant is None else str(tenant),
                body=body,
                accepted_at=float(headers.get(H_ACCEPTED_AT, 0.0)),
            )
        except KeyError as exc:
            raise ValueError(f"event message lacks header {exc.args[0]}") from exc


def batch_message_id(event_id: str, number: int = 0) -> str:
    """The message id of the `number`-th batch message carrying an event's first attempts."""
    return f"batch.{event_id}" if number == 0 else f"batch.{event_id}.{number}"


def delivery_count(message: ConsumedMessage) -> int:
    """How many deliveries `deliveries_of` will find (at most; a repeated id counts twice),
    read without building them."""
    listed = (message.headers or {}).get(H_SUBSCRIPTIONS)
    if listed is None:
        return 1
    if isinstance(listed, bytes):
        listed = listed.decode(errors="replace")  # only counted; `deliveries_of` judges it
    return max(1, len(str(listed).split()))


def deliveries_of(message: ConsumedMessage) -> list[DeliveryMessage]:
    """The deliveries one consumed format 1 message carries.

    A plain delivery message carries one. A batch message (header `H_SUBSCRIPTIONS`) carries
    the first attempt of one event to each subscription it lists: fanout publishes an event's
    deliveries as one message, so the broker, fanout and the sender handle one message per
    event instead of one per match. Each delivery keeps the id derived from the event and the
    subscription, and anything after the first attempt (retry, dead queue) travels as a plain
    message. Raises ValueError when the message is neither.
    """
    headers = dict(message.headers or {})
    listed = headers.get(H_SUBSCRIPTIONS)
    if listed is None:
        return [DeliveryMessage.from_message(message)]
    if isinstance(listed, bytes):
        listed = listed.decode()
    subscription_ids = str(listed).split()
    if not subscription_ids:
        raise ValueError(f"batch message lists no subscription in {H_SUBSCRIPTIONS}")
    event_id = _field(headers, H_EVENT_ID, message.correlation_id)
    event_type = _field(headers, H_EVENT_TYPE, message.type)
    attempt = int(headers.get(H_ATTEMPT, 1))
    accepted_at = float(headers.get(H_ACCEPTED_AT, 0.0))
    return [
        DeliveryMessage(
            delivery_id=delivery_id(event_id, subscription_id),
            event_id=event_id,
            subscription_id=subscription_id,
            event_type=event_type,
            body=message.body,
            attempt=attempt,
            accepted_at=accepted_at,
        )
        for subscription_id in dict.fromkeys(subscription_ids)
    ]


def deferrals_of(headers: Mapping[str, Any] | None) -> int:
    """The deferral count carried by a consumed message (0 when absent or unreadable)."""
    try:
        return int((headers or {}).get(H_DEFERRALS, 0))
    except (TypeError, ValueError):
        return 0
