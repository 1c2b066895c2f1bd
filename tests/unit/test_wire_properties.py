"""The properties fanout builds straight from an event are the ones the sender reads back."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiormq import spec
from pamqp.header import ContentHeader

from shared.ids import delivery_id
from shared.wire.messages import (
    H_ACCEPTED_AT,
    H_ATTEMPT,
    DeliveryMessage,
    EventMessage,
    deliveries_of,
)
from shared.wire.properties import (
    delivery_properties,
    event_deliveries_properties,
    first_attempt_headers,
    first_attempt_properties,
)

EVENT = EventMessage("evt_1", "order.paid", "acme", b'{"type":"order.paid"}', 1700000000.25)


@dataclass
class _Consumed:
    """A consumed message as aio-pika presents the properties fanout published."""

    body: bytes
    headers: Mapping[str, Any] | None
    message_id: str | None
    correlation_id: str | None
    type: str | None
    app_id: str | None

    @classmethod
    def of(cls, body: bytes, props: spec.Basic.Properties) -> _Consumed:
        ids = (props.message_id, props.correlation_id, props.message_type, props.app_id)
        return cls(body, props.headers, *ids)


def _encoded(props: spec.Basic.Properties) -> bytes:
    return ContentHeader(0, 0, props).marshal()


def _first_attempt(sub: str) -> DeliveryMessage:
    return DeliveryMessage(
        delivery_id=delivery_id(EVENT.event_id, sub),
        event_id=EVENT.event_id,
        subscription_id=sub,
        event_type=EVENT.event_type,
        body=EVENT.body,
        accepted_at=EVENT.accepted_at,
    )


def test_a_first_attempt_is_encoded_as_any_delivery_message_with_two_headers() -> None:
    expected = _first_attempt("sub_1")
    props = first_attempt_properties(
        EVENT, expected.delivery_id, "sub_1", first_attempt_headers(EVENT)
    )
    assert _encoded(props) == _encoded(delivery_properties(expected))
    assert list(props.headers or {}) == [H_ATTEMPT, H_ACCEPTED_AT]
    assert deliveries_of(_Consumed.of(EVENT.body, props)) == [expected]


def test_an_events_batch_message_carries_one_first_attempt_per_listed_subscription() -> None:
    props = event_deliveries_properties(EVENT, ["sub_1", "sub_2"], 1)
    assert props.message_id == "batch.evt_1.1"
    assert props.app_id is None
    consumed = _Consumed.of(EVENT.body, props)
    assert deliveries_of(consumed) == [_first_attempt("sub_1"), _first_attempt("sub_2")]
