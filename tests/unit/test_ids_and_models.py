"""Identifiers and the wire models."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from shared.ids import _base32, delivery_id, new_id
from shared.models import EventIn, webhook_body
from shared.wire.messages import (
    H_ACCEPTED_AT,
    H_ATTEMPT,
    H_SUBSCRIPTIONS,
    DeliveryMessage,
    EventMessage,
    deliveries_of,
)


def test_new_ids_are_unique_prefixed_and_sort_by_creation_time() -> None:
    first = [new_id("evt") for _ in range(1000)]
    time.sleep(0.002)
    later = new_id("evt")
    assert len(set(first)) == 1000
    assert all(i.startswith("evt_") and len(i) == 30 for i in first)
    assert later > max(first)


def test_ids_made_in_one_millisecond_still_sort_in_creation_order() -> None:
    made = [new_id("sub") for _ in range(2000)]
    assert made == sorted(made)
    assert len(set(made)) == len(made)


def test_delivery_id_is_derived_from_event_and_subscription() -> None:
    assert delivery_id("evt_a", "sub_b") == delivery_id("evt_a", "sub_b")
    assert delivery_id("evt_a", "sub_b") != delivery_id("evt_a", "sub_c")
    assert delivery_id("evt_a", "sub_b") != delivery_id("evt_b", "sub_b")


def test_delivery_ids_never_change_between_versions() -> None:
    # Stored rows are found again by recomputing the id: it must stay what it always was.
    assert delivery_id("evt_a", "sub_b") == "dlv_3hggqtt3j1ngce44cg32x3qzmp"


@pytest.mark.parametrize("length", [26, 25, 2, 1])
def test_base32_digits_are_the_number_in_crockford_base32(length: int) -> None:
    for value in (0, 1, 31, 32, 2**128 - 1, *(int.from_bytes(os.urandom(17)) for _ in range(500))):
        digits = []
        rest = value
        for _ in range(length):
            digits.append("0123456789abcdefghjkmnpqrstvwxyz"[rest & 31])
            rest >>= 5
        assert _base32(value, length) == "".join(reversed(digits))


def test_webhook_body_is_the_contract_shape() -> None:
    body = webhook_body("invoice.paid", datetime(2026, 1, 2, 3, 4, 5, 678000, UTC), {"a": 1})
    assert orjson.loads(body) == {
        "type": "invoice.paid",
        "timestamp": "2026-01-02T03:04:05.678Z",
        "data": {"a": 1},
    }


def test_delivery_message_round_trips_through_properties() -> None:
    message = DeliveryMessage("dlv_1", "evt_1", "sub_1", "a.b", b"{}", attempt=2, accepted_at=1.5)
    props = message.properties()
    assert len(props["headers"]) == 2  # the ids travel as basic properties
    again = DeliveryMessage.from_amqp(
        props["headers"],
        message.body,
        message_id=props["message_id"],
        correlation_id=props["correlation_id"],
        type=props["type"],
        app_id=props["app_id"],
    )
    assert again == message
    assert again.next_attempt().attempt == 3


def test_a_delivery_with_its_ids_in_headers_is_still_read() -> None:
    # Messages published before the ids moved to properties, and dead-queue copies.
    message = DeliveryMessage("dlv_1", "evt_1", "sub_1", "a.b", b"{}", attempt=3, accepted_at=2.0)
    assert DeliveryMessage.from_amqp(message.readable_headers(), message.body) == message


def test_a_message_without_its_ids_is_refused_with_the_missing_name() -> None:
    with pytest.raises(ValueError, match="x-hookline-subscription-id"):
        DeliveryMessage.from_amqp(
            {"x-hookline-delivery-id": "d"}, b"", correlation_id="e", type="a.b"
        )


@dataclass
class _Consumed:
    body: bytes
    headers: dict[str, Any]
    message_id: str | None = None
    correlation_id: str | None = None
    type: str | None = None
    app_id: str | None = None


def test_a_batch_message_carries_one_first_attempt_per_listed_subscription() -> None:
    batch = _Consumed(
        b"{}",
        {H_ATTEMPT: 1, H_ACCEPTED_AT: 4.5, H_SUBSCRIPTIONS: b"sub_a sub_b sub_a"},
        message_id="batch.evt_1",
        correlation_id="evt_1",
        type="a.b",
    )
    assert deliveries_of(batch) == [
        DeliveryMessage(delivery_id("evt_1", s), "evt_1", s, "a.b", b"{}", 1, 4.5)
        for s in ("sub_a", "sub_b")  # a subscription listed twice is delivered once
    ]


def test_a_plain_message_carries_its_one_delivery() -> None:
    message = DeliveryMessage("dlv_1", "evt_1", "sub_1", "a.b", b"{}", attempt=2, accepted_at=1.5)
    props = message.properties()
    consumed = _Consumed(
        message.body,
        props["headers"],
        props["message_id"],
        props["correlation_id"],
        props["type"],
        props["app_id"],
    )
    assert deliveries_of(consumed) == [message]


@pytest.mark.parametrize(
    ("headers", "correlation_id", "missing"),
    [
        ({H_SUBSCRIPTIONS: "  "}, "evt_1", "lists no subscription"),
        ({H_SUBSCRIPTIONS: "sub_a"}, None, "x-hookline-event-id"),
    ],
)
def test_a_broken_batch_message_is_refused_naming_what_is_missing(
    headers: dict[str, Any], correlation_id: str | None, missing: str
) -> None:
    with pytest.raises(ValueError, match=missing):
        deliveries_of(_Consumed(b"{}", headers, correlation_id=correlation_id, type="a.b"))


def test_event_message_keeps_a_missing_tenant_missing() -> None:
    message = EventMessage("evt_1", "a.b", None, b"{}", 2.0)
    assert "x-hookline-tenant-id" not in message.headers()
    assert EventMessage.from_amqp(message.headers(), b"{}") == message
    tenant = EventMessage("evt_1", "a.b", "t1", b"{}", 2.0)
    assert EventMessage.from_amqp(tenant.headers(), b"{}").tenant_id == "t1"


@pytest.mark.parametrize(
    ("envelope", "field", "where"),
    [
        ({"id": "key\x00"}, "id", ""),
        ({"data": {"note": "nul\x00here"}}, "data", "data.note"),
        ({"data": {"items": [1, {"name": "x\x00"}]}}, "data", "data.items[1].name"),
        ({"data": {"a\x00b": 1}}, "data", "data (a key)"),
    ],
)
def test_an_envelope_holding_a_nul_character_is_refused_naming_where(
    envelope: dict[str, object], field: str, where: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        EventIn.model_validate({"type": "order.created", **envelope})
    [error] = caught.value.errors()
    assert error["loc"] == (field,)
    assert "NUL" in error["msg"]
    assert where in error["msg"]


def test_an_envelope_without_nul_characters_is_accepted() -> None:
    data = {"items": [1, 2.5, None, True, {"name": "ok"}], "note": "\\u0000 spelled out"}
    assert EventIn.model_validate({"type": "order.created", "data": data}).data == data
