"""Wire format 2: many events or deliveries per message, and format 1 still read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from shared.ids import delivery_id
from shared.wire import batches
from shared.wire.messages import (
    H_ACCEPTED_AT,
    H_ATTEMPT,
    H_SUBSCRIPTIONS,
    DeliveryMessage,
    EventMessage,
)

BODY = b'{"type":"order.paid","timestamp":"2026-01-01T00:00:00.000Z","data":{"note":"a\\nb"}}'


@dataclass
class _Consumed:
    body: bytes
    headers: Mapping[str, Any] | None = field(default_factory=dict)
    message_id: str | None = None
    correlation_id: str | None = None
    type: str | None = None
    app_id: str | None = None


def _event(n: int, body: bytes = BODY, tenant: str | None = None) -> EventMessage:
    return EventMessage(f"evt_{n}", "order.paid", tenant, body, 1700000000.5 + n)


def _delivery(event: EventMessage, sub: str) -> DeliveryMessage:
    return DeliveryMessage(
        delivery_id=delivery_id(event.event_id, sub),
        event_id=event.event_id,
        subscription_id=sub,
        event_type=event.event_type,
        body=event.body,
        accepted_at=event.accepted_at,
    )


def test_events_round_trip_in_order_with_their_bodies_and_tenants() -> None:
    events = [_event(1), _event(2, b"\n\n{}", tenant="acme"), _event(3, b"")]
    assert batches.decode_events(batches.encode_events(events)) == events


def test_deliveries_of_many_events_round_trip_sharing_each_events_body() -> None:
    a, b = _event(1), _event(2, b'{"other":"body"}')
    deliveries = [_delivery(a, "sub_1"), _delivery(b, "sub_1"), _delivery(a, "sub_2")]
    body = batches.encode_deliveries(deliveries)
    assert body.count(BODY) == 1  # one copy of an event's body, whatever its matches
    message = _Consumed(body, batches.headers_for(batches.DELIVERIES, 3))
    assert batches.delivery_count(message) == 3
    assert batches.deliveries_of(message) == deliveries


def test_format_1_messages_are_still_read_as_before() -> None:
    # What a fanout of an earlier version publishes: a plain delivery, and a batch of one
    # event's matches listed in a header. A sender of this version must take both.
    event = _event(7)
    plain = _delivery(event, "sub_1")
    consumed = _Consumed(plain.body, **plain.properties())
    assert batches.deliveries_of(consumed) == [plain]
    assert batches.delivery_count(consumed) == 1
    batch = _Consumed(
        BODY,
        {H_SUBSCRIPTIONS: "sub_1 sub_2", H_ATTEMPT: 1, H_ACCEPTED_AT: event.accepted_at},
        correlation_id=event.event_id,
        type=event.event_type,
    )
    assert batches.delivery_count(batch) == 2
    assert batches.deliveries_of(batch) == [_delivery(event, "sub_1"), _delivery(event, "sub_2")]
    assert batches.kind_of(plain.properties()["headers"]) is None


@pytest.mark.parametrize(
    "body",
    [
        b"no index line",
        b"not json\n",
        b'{"b":[],"i":[]}\n',
        b'{"b":[5],"i":[["evt_1","a.b",null,1.0,0]]}\nabc',  # shorter than listed
        b'{"b":[1],"i":[["evt_1","a.b",null,1.0,0]]}\nabc',  # bytes left over
        b'{"b":[3],"i":[["evt_1","a.b",null,1.0,4]]}\nabc',  # no such body
        b'{"b":[3],"i":[["evt_1","a.b"]]}\nabc',  # short item
    ],
)
def test_a_malformed_batch_is_a_value_error(body: bytes) -> None:
    with pytest.raises(ValueError):
        batches.decode_events(body)


def test_an_events_message_is_not_taken_for_deliveries() -> None:
    message = _Consumed(batches.encode_events([_event(1)]), batches.headers_for(batches.EVENTS, 1))
    with pytest.raises(ValueError):
        batches.deliveries_of(message)


def test_chunks_stay_within_the_item_and_byte_bounds() -> None:
    parts = list(batches.chunks([1] * (batches.MAX_ITEMS * 2 + 1)))
    assert [len(p) for p in parts] == [batches.MAX_ITEMS, batches.MAX_ITEMS, 1]
    big = batches.MAX_BODY_BYTES // 2 + 1
    parts = list(batches.chunks([big, big, 0, big * 3]))
    assert parts == [range(0, 1), range(1, 3), range(3, 4)]  # an oversized one goes alone
    assert list(batches.chunks([])) == []
