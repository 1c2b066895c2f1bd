"""The AMQP properties of every message Hookline publishes, in both wire formats.

`*_properties` build aiormq's properties for `publish_burst` (no aio-pika `Message` on the
way: the hot paths), `*_message` an aio-pika `Message` for `publish_confirmed`. The ids a
delivery carries travel in basic properties and its header table holds two entries: encoding
table entries was ~9% of fanout, so keep the tables this small.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aio_pika
from aiormq import spec

from shared.wire import batches
from shared.wire.messages import (
    H_ACCEPTED_AT,
    H_ATTEMPT,
    H_SUBSCRIPTIONS,
    DeliveryMessage,
    EventMessage,
    batch_message_id,
)

JSON_CONTENT_TYPE = "application/json"
PERSISTENT = 2
"""`delivery_mode` of a persistent message, for `spec.Basic.Properties`."""


def json_properties(
    *, headers: dict[str, Any], message_id: str | None = None
) -> spec.Basic.Properties:
    """A persistent JSON message's properties (a dead-queue copy of any message)."""
    return spec.Basic.Properties(
        content_type=JSON_CONTENT_TYPE,
        delivery_mode=PERSISTENT,
        headers=headers,
        message_id=message_id,
    )


def json_message(
    body: bytes,
    *,
    headers: dict[str, Any] | None = None,
    message_id: str | None = None,
    expiration: float | None = None,
) -> aio_pika.Message:
    """A persistent JSON message."""
    return aio_pika.Message(
        body,
        content_type=JSON_CONTENT_TYPE,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        headers=headers or {},
        message_id=message_id,
        expiration=expiration,
    )


def rejected_copy(
    body: bytes,
    headers: dict[str, Any],
    *,
    content_type: str | None = None,
    message_id: str | None = None,
) -> aio_pika.Message:
    """A persistent copy of a consumed message for a rejected queue; `headers` are the
    message's own plus why (`H_ERROR`, and `H_REASON` from ingest)."""
    return aio_pika.Message(
        body,
        headers=headers,
        content_type=content_type,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=message_id,
    )


def event_properties(event: EventMessage) -> spec.Basic.Properties:
    """An event on `{ns}.events`: its fields as headers, message id = event id."""
    return spec.Basic.Properties(
        content_type=JSON_CONTENT_TYPE,
        delivery_mode=PERSISTENT,
        headers=event.headers(),
        message_id=event.event_id,
    )


def event_json_message(
    event: EventMessage, *, extra_headers: dict[str, Any] | None = None
) -> aio_pika.Message:
    """`event_properties`' message, `extra_headers` added (`H_ERROR` of a rejected copy)."""
    headers = event.headers()
    if extra_headers:
        headers.update(extra_headers)
    return json_message(event.body, headers=headers, message_id=event.event_id)


def events_properties(events: Sequence[EventMessage]) -> spec.Basic.Properties:
    """A format 2 message carrying `events` (`batches.encode_events`), on `{ns}.events` with
    routing key `batches.EVENTS_ROUTING_KEY`."""
    return spec.Basic.Properties(
        content_type=batches.CONTENT_TYPE,
        delivery_mode=PERSISTENT,
        headers=batches.headers_for(batches.EVENTS, len(events)),
        message_id=f"events.{events[0].event_id}",
    )


def first_attempt_headers(event: EventMessage) -> dict[str, Any]:
    """The header table of an event's first deliveries (`DeliveryMessage.headers`, attempt 1):
    built once per event and shared by its messages (`first_attempt_properties`)."""
    return {H_ATTEMPT: 1, H_ACCEPTED_AT: event.accepted_at}


def first_attempt_properties(
    event: EventMessage, delivery_id: str, subscription_id: str, headers: dict[str, Any]
) -> spec.Basic.Properties:
    """`delivery_properties` of the event's first attempt to one subscription, built straight
    from the event (fanout's hot path); `headers` is `first_attempt_headers(event)`."""
    return spec.Basic.Properties(
        content_type=JSON_CONTENT_TYPE,
        delivery_mode=PERSISTENT,
        headers=headers,
        message_id=delivery_id,
        correlation_id=event.event_id,
        message_type=event.event_type,
        app_id=subscription_id,
    )


def event_deliveries_properties(
    event: EventMessage, subscription_ids: Sequence[str], number: int
) -> spec.Basic.Properties:
    """The `number`-th batch message of an event's first attempts to `subscription_ids`
    (read back by `deliveries_of`): no delivery id nor subscription id in the properties;
    the header table of `first_attempt_headers` plus `H_SUBSCRIPTIONS`."""
    return spec.Basic.Properties(
        content_type=JSON_CONTENT_TYPE,
        delivery_mode=PERSISTENT,
        headers={
            H_ATTEMPT: 1,
            H_ACCEPTED_AT: event.accepted_at,
            H_SUBSCRIPTIONS: " ".join(subscription_ids),
        },
        message_id=batch_message_id(event.event_id, number),
        correlation_id=event.event_id,
        message_type=event.event_type,
    )


def deliveries_properties(
    deliveries: Sequence[DeliveryMessage], *, fresh: bool = False
) -> spec.Basic.Properties:
    """A format 2 message carrying `deliveries` (`batches.encode_deliveries`); `fresh` when
    none of them was published before (`batches.H_FRESH`)."""
    headers = batches.headers_for(batches.DELIVERIES, len(deliveries))
    if fresh:
        headers[batches.H_FRESH] = 1
    return spec.Basic.Properties(
        content_type=batches.CONTENT_TYPE,
        delivery_mode=PERSISTENT,
        headers=headers,
        message_id=f"deliveries.{deliveries[0].delivery_id}",
    )


def delivery_properties(
    msg: DeliveryMessage, *, extra_headers: dict[str, Any] | None = None
) -> spec.Basic.Properties:
    """A delivery message as the sender consumes it: ids in basic properties
    (`DeliveryMessage.properties`), `extra_headers` added to its header table."""
    properties = msg.properties()
    headers = properties["headers"]
    if extra_headers:
        headers.update(extra_headers)
    return spec.Basic.Properties(
        content_type=JSON_CONTENT_TYPE,
        delivery_mode=PERSISTENT,
        headers=headers,
        message_id=properties["message_id"],
        correlation_id=properties["correlation_id"],
        message_type=properties["type"],
        app_id=properties["app_id"],
    )


def delivery_json_message(
    msg: DeliveryMessage, *, extra_headers: dict[str, Any] | None = None
) -> aio_pika.Message:
    """`delivery_properties`' message, for `publish_confirmed`."""
    properties = msg.properties()
    if extra_headers:
        properties["headers"].update(extra_headers)
    return aio_pika.Message(
        msg.body,
        content_type=JSON_CONTENT_TYPE,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        **properties,
    )
