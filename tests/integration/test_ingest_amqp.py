"""Events published over AMQP: stored and published once to `{ns}.events`, or rejected."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import orjson
import pytest

from shared.settings import Settings
from shared.wire.messages import H_ERROR, H_REASON, EventMessage
from tests.support.ingest import Ingest, running_ingest


@pytest.fixture
async def ingest(settings: Settings) -> AsyncIterator[Ingest]:
    async with running_ingest(settings) as running:
        yield running


async def test_an_event_is_stored_and_published_with_its_type(ingest: Ingest) -> None:
    data = {"invoice_id": "in_1", "amount": 990}
    await ingest.publish({"type": "invoice.paid", "data": data, "tenant_id": "acme"})
    [message] = await ingest.take(ingest.events, 1)
    event = EventMessage.from_amqp(dict(message.headers), message.body)
    assert message.routing_key == "invoice.paid"
    assert event.event_id.startswith("evt_") and event.tenant_id == "acme"
    assert orjson.loads(event.body)["data"] == data

    conn = await asyncpg.connect(ingest.settings.database_url.get_secret_value())
    try:
        row = await conn.fetchrow("SELECT * FROM events WHERE id = $1", event.event_id)
    finally:
        await conn.close()
    assert row["source"] == "amqp" and row["type"] == "invoice.paid"
    assert row["dispatched_at"] is not None


async def test_the_same_idempotency_key_is_published_once(ingest: Ingest) -> None:
    body = {"type": "order.created", "data": {"n": 1}, "id": "order-1"}
    for _ in range(3):
        await ingest.publish(body)
    await ingest.publish({"type": "order.created", "data": {"n": 2}, "id": "order-2"})
    got = await ingest.take(ingest.events, 3, timeout_s=3)
    keys = sorted(orjson.loads(m.body)["data"]["n"] for m in got)
    assert keys == [1, 2]


async def test_an_event_stored_but_never_dispatched_is_published_again(ingest: Ingest) -> None:
    """A crash between store and publish leaves the row undispatched: its key republishes it."""
    conn = await asyncpg.connect(ingest.settings.database_url.get_secret_value())
    try:
        await conn.execute(
            "INSERT INTO events (id, type, data, idempotency_key, source)"
            " VALUES ('evt_orphan', 'order.created', '{\"n\": 7}', 'k-orphan', 'amqp')"
        )
        # Ingest stores a key with its event, in one statement (issue 16: keys per tenant).
        await conn.execute(
            "INSERT INTO idempotency_keys (scope, key, event_id)"
            " VALUES ('', 'k-orphan', 'evt_orphan')"
        )
        await ingest.publish({"type": "order.created", "data": {"n": 7}, "id": "k-orphan"})
        [message] = await ingest.take(ingest.events, 1)
        assert message.headers["x-hookline-event-id"] == "evt_orphan"
        await ingest.publish({"type": "order.created", "data": {"n": 7}, "id": "k-orphan"})
        assert await ingest.take(ingest.events, 1, timeout_s=1.5) == []
        dispatched = await conn.fetchval(
            "SELECT dispatched_at IS NOT NULL FROM events WHERE id = 'evt_orphan'"
        )
    finally:
        await conn.close()
    assert dispatched


@pytest.mark.parametrize(
    ("body", "reason", "names"),
    [
        (b"not json at all", "not_json", "JSON"),
        (b"[1, 2]", "not_object", "object"),
        (b'{"data": {}}', "missing_type", "type"),
        (b'{"type": "Invoice Paid"}', "invalid_type", "type"),
        (b'{"type": "a.b", "tenant_id": "no spaces"}', "invalid_envelope", "tenant_id"),
        (b'{"type": "a.b", "data": {"x": "' + b"y" * 300_000 + b'"}}', "too_large", "bytes"),
    ],
)
async def test_invalid_messages_end_in_the_rejected_queue(
    ingest: Ingest, body: bytes, reason: str, names: str
) -> None:
    await ingest.publish(body, routing_key="whatever", origin="test")
    [rejected] = await ingest.take(await ingest.rejected_queue(), 1)
    assert rejected.body == body
    assert rejected.headers[H_REASON] == reason
    assert names in rejected.headers[H_ERROR]
    assert rejected.headers["origin"] == "test"
    assert await ingest.take(ingest.events, 1, timeout_s=0.3) == []


async def test_data_failing_the_schema_is_rejected_naming_the_path(ingest: Ingest) -> None:
    schema = {
        "type": "object",
        "properties": {"amount": {"type": "integer"}},
        "required": ["amount"],
    }
    status, _, _ = await ingest.call(
        "POST", "/v1/event-types", {"name": "invoice.paid", "schema": schema}
    )
    assert status == 201
    await ingest.publish({"type": "invoice.paid", "data": {"amount": "ten"}})
    await ingest.publish({"type": "invoice.paid", "data": {"amount": 10}})
    [rejected] = await ingest.take(await ingest.rejected_queue(), 1)
    assert rejected.headers[H_REASON] == "schema_mismatch"
    assert "data.amount" in rejected.headers[H_ERROR]
    [accepted] = await ingest.take(ingest.events, 1)
    assert orjson.loads(accepted.body)["data"] == {"amount": 10}


async def test_unknown_types_are_rejected_when_the_catalogue_is_required(
    settings: Settings,
) -> None:
    strict = settings.model_copy(update={"require_event_types": True})
    async with running_ingest(strict) as ingest:
        await ingest.call("POST", "/v1/event-types", {"name": "known.type"})
        await ingest.publish({"type": "unknown.type"})
        await ingest.publish({"type": "known.type"})
        [rejected] = await ingest.take(await ingest.rejected_queue(), 1)
        [accepted] = await ingest.take(ingest.events, 1)
    assert rejected.headers[H_REASON] == "unknown_event_type"
    assert accepted.routing_key == "known.type"


async def test_a_catalogue_change_made_elsewhere_arrives_by_notify(ingest: Ingest) -> None:
    conn = await asyncpg.connect(ingest.settings.database_url.get_secret_value())
    try:
        await conn.execute(
            "INSERT INTO event_types (name, schema)"
            " VALUES ('user.created', '{\"required\": [\"email\"]}')"
        )
    finally:
        await conn.close()
    for _ in range(50):
        status, page, _ = await ingest.call("POST", "/v1/events", {"type": "user.created"})
        if status == 422:
            break
        await asyncio.sleep(0.1)
    assert status == 422
    assert page["errors"][0]["field"] == "body.data"
