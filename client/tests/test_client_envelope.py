"""Events ingest would refuse fail at the call site with ValueError, before anything is sent."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hookline_client import MAX_PAYLOAD_BYTES, AsyncNotifier, Notifier
from hookline_client.envelope import envelope

UNREACHABLE = "amqp://guest:guest@127.0.0.1:1/"


@pytest.mark.parametrize(
    "name", ["invoice.paid", "billing.invoice.paid", "a.b.c.d", "user_account.signed_up"]
)
def test_valid_type_names_pass(name: str) -> None:
    body = json.loads(envelope(name, {"x": 1}).body)
    assert body["type"] == name and body["data"] == {"x": 1}


@pytest.mark.parametrize(
    "name",
    ["invoice", "Invoice.paid", "invoice.", ".paid", "a.b.c.d.e", "invoice-paid", "1a.b", ""],
)
def test_invalid_type_names_fail(name: str) -> None:
    with pytest.raises(ValueError, match="invalid event type"):
        envelope(name, {})


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"when": object()}, "not JSON-serialisable"),
        ({"x": math.nan}, "not JSON-serialisable"),
        ([1, 2], "must be a JSON object"),
        ({"name": "a\x00b"}, "NUL character"),
        ({"big": 2**70}, "64-bit range"),
    ],
)
def test_data_ingest_cannot_take_fails(data: Any, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        envelope("invoice.paid", data)


def test_the_size_limit_is_ingests() -> None:
    envelope("invoice.paid", {"blob": "x" * (MAX_PAYLOAD_BYTES - 100)})
    with pytest.raises(ValueError, match="more than the 262144 allowed"):
        envelope("invoice.paid", {"blob": "x" * MAX_PAYLOAD_BYTES})


@pytest.mark.parametrize("tenant", ["", " acme", "a" * 129, "ac/me"])
def test_bad_tenant_ids_fail(tenant: str) -> None:
    with pytest.raises(ValueError, match="invalid tenant_id"):
        envelope("invoice.paid", {}, tenant_id=tenant)


@pytest.mark.parametrize("key", ["", "k" * 256, "a\x00"])
def test_bad_ids_fail(key: str) -> None:
    with pytest.raises(ValueError, match="invalid id"):
        envelope("invoice.paid", {}, id=key)


def test_the_key_is_the_given_id_or_a_new_unique_one() -> None:
    assert envelope("invoice.paid", {}, id="in_1-paid").key == "in_1-paid"
    keys = {envelope("invoice.paid", {}).key for _ in range(100)}
    assert len(keys) == 100


async def test_async_notify_raises_value_error_before_connecting() -> None:
    notifier = AsyncNotifier(UNREACHABLE, timeout_s=1)
    with pytest.raises(ValueError, match=r"invalid event type 'Invoice\.Paid'"):
        await notifier.notify("Invoice.Paid", {})
    with pytest.raises(ValueError, match="event 1: invalid event type"):
        await notifier.notify_many([{"type": "a.b"}, {"type": "nope"}])
    await notifier.close()


def test_sync_notify_raises_value_error_before_connecting() -> None:
    with Notifier(UNREACHABLE, timeout_s=1) as notifier:
        with pytest.raises(ValueError, match="invalid event type"):
            notifier.notify("invoice", {})
