"""Wire models: the event envelope published to Hookline, and the delivery message.

A delivery message's body is the exact webhook body the receiver gets, built once by fanout;
what the sender needs besides travels in basic properties and two headers, so the sender never
parses the body.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.ids import delivery_id

EVENT_TYPE_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*){1,3}$"
EVENT_TYPE_RE = re.compile(EVENT_TYPE_PATTERN)
TENANT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
IDEMPOTENCY_KEY_MAX = 255


class EventIn(BaseModel):
    """An event as published over AMQP or `POST /v1/events` (CONTRACT section 2)."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(pattern=EVENT_TYPE_PATTERN, description="Event type, as `invoice.paid`.")
    data: dict[str, Any] = Field(default_factory=dict, description="The event's payload.")
    id: str | None = Field(
        None,
        min_length=1,
        max_length=IDEMPOTENCY_KEY_MAX,
        description="Idempotency key: the same id again is stored and delivered once.",
    )
    tenant_id: str | None = Field(
        None,
        pattern=TENANT_ID_PATTERN,
        description="Only subscriptions with the same tenant_id receive the event.",
    )

    # Postgres stores neither text nor jsonb holding a NUL character: refused here, such an
    # event gets a clear reason (422 / invalid_envelope) instead of failing to be stored.
    @field_validator("id")
    @classmethod
    def _id_without_nul(cls, value: str | None) -> str | None:
        if value is not None and "\x00" in value:
            raise ValueError("must not contain a NUL character (\\u0000)")
        return value

    @field_validator("data")
    @classmethod
    def _data_without_nul(cls, value: dict[str, Any]) -> dict[str, Any]:
        where = nul_path(value)
        if where is not None:
            raise ValueError(f"must not contain a NUL character (\\u0000), found at {where}")
        return value


def nul_path(value: Any, root: str = "data") -> str | None:
    """Where a decoded JSON value holds a NUL character in a key or string, or None.

    A walk of the value (no re-serializing); the path reads like `data.items[2].name`.
    """
    stack: list[tuple[Any, str]] = [(value, root)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return where
        elif isinstance(item, dict):
            for key, child in item.items():
                if "\x00" in key:
                    return f"{where} (a key)"
                if isinstance(child, dict | list | str):
                    stack.append((child, f"{where}.{key}"))
        elif isinstance(item, list):
            stack.extend(
                (child, f"{where}[{i}]")
                for i, child in enumerate(item)
                if isinstance(child, dict | list | str)
            )
    return None


def webhook_body(event_type: str, created_at: datetime, data: dict[str, Any]) -> bytes:
    """The body POSTed to receivers (CONTRACT section 4)."""
    return orjson.dumps({"type": event_type, "timestamp": rfc3339(created_at), "data": data})


def rfc3339(moment: datetime) -> str:
    """UTC RFC 3339 with milliseconds and a `Z`."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# Header names of a delivery message.
H_DELIVERY_ID = "x-hookline-delivery-id"
H_EVENT_ID = "x-hookline-event-id"
H_SUBSCRIPTION_ID = "x-hookline-subscription-id"
H_EVENT_TYPE = "x-hookline-event-type"
H_ATTEMPT = "x-hookline-attempt"
H_ACCEPTED_AT = "x-hookline-accepted-at"
H_ERROR = "x-hookline-error"
H_SUBSCRIPTIONS = "x-hookline-subscriptions"
"""Of a batch message: the space-separated ids of the subscriptions it is delivered to."""


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
    """The deliveries one consumed message carries.

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


H_TENANT_ID = "x-hookline-tenant-id"


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
    def from_amqp(cls, headers: dict[str, Any], body: bytes) -> EventMessage:
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
