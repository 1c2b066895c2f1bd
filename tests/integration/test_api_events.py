"""`POST /v1/events` and `GET /v1/events/{id}`, and the event-type catalogue over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import orjson
import pytest

from shared.ids import delivery_id
from shared.settings import Settings
from tests.support.ingest import Ingest, running_ingest


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Ingest]:
    async with running_ingest(settings) as running:
        yield running


async def test_an_event_is_accepted_then_a_duplicate_answers_the_first(api: Ingest) -> None:
    body = {"type": "invoice.paid", "data": {"amount": 5}, "id": "inv-5"}
    status, first, _ = await api.call("POST", "/v1/events", body)
    assert status == 202, first
    assert first["id"].startswith("evt_") and first["source"] == "http"
    assert first["idempotency_key"] == "inv-5" and first["dispatched_at"] is not None

    status, again, _ = await api.call("POST", "/v1/events", body)
    assert status == 200
    assert again["id"] == first["id"] and again["data"] == {"amount": 5}
    # Since issue 16 a key reused for other data is refused (CONTRACT section 2), not
    # answered with the first event.
    status, problem, _ = await api.call("POST", "/v1/events", {**body, "data": {"amount": 6}})
    assert status == 409, problem

    [published] = await api.take(api.events, 1)
    assert published.headers["x-hookline-event-id"] == first["id"]
    assert await api.take(api.events, 1, timeout_s=0.5) == []


async def test_get_event_summarizes_its_deliveries(api: Ingest) -> None:
    _, event, _ = await api.call("POST", "/v1/events", {"type": "invoice.paid"})
    _, sub, _ = await api.call(
        "POST", "/v1/subscriptions", {"url": "http://127.0.0.1:9/", "event_types": ["*"]}
    )
    dlv = delivery_id(event["id"], sub["id"])
    conn = await asyncpg.connect(api.settings.database_url.get_secret_value())
    try:
        await conn.execute(
            "INSERT INTO deliveries (id, event_id, subscription_id, status, attempts)"
            " VALUES ($1, $2, $3, 'failed', 3)",
            dlv,
            event["id"],
            sub["id"],
        )
    finally:
        await conn.close()
    status, detail, _ = await api.call("GET", f"/v1/events/{event['id']}")
    assert status == 200
    assert detail["type"] == "invoice.paid"
    assert detail["deliveries"] == [
        {"id": dlv, "subscription_id": sub["id"], "status": "failed", "attempts": 3}
    ]
    status, problem, _ = await api.call("GET", "/v1/events/evt_missing")
    assert status == 404 and problem["status"] == 404


async def test_invalid_events_are_422_naming_each_field(api: Ingest) -> None:
    status, problem, _ = await api.call(
        "POST", "/v1/events", {"type": "Bad Type", "tenant_id": "!", "data": []}
    )
    assert status == 422
    assert sorted(e["field"] for e in problem["errors"]) == [
        "body.data",
        "body.tenant_id",
        "body.type",
    ]
    assert await api.take(api.events, 1, timeout_s=0.3) == []


async def test_nul_characters_are_422_naming_the_field(api: Ingest) -> None:
    """Postgres cannot store them: refused up front rather than failing as a 500."""
    for body, field in [
        ({"type": "order.created", "id": "key\u0000"}, "body.id"),
        ({"type": "order.created", "data": {"a": ["nul\u0000"]}}, "body.data"),
    ]:
        status, problem, _ = await api.call("POST", "/v1/events", body)
        assert status == 422
        assert [e["field"] for e in problem["errors"]] == [field]
    assert await api.take(api.events, 1, timeout_s=0.3) == []


async def _rejected(api: Ingest) -> dict[str, float]:
    """`hookline_events_rejected_total` by reason, as /metrics shows it."""
    url = f"http://127.0.0.1:{api.settings.metrics_port}/metrics"
    async with api.http.get(url) as resp:
        text = await resp.text()
    prefix = 'hookline_events_rejected_total{reason="'
    found = {}
    for line in text.splitlines():
        if line.startswith(prefix):
            labels, value = line.split(" ")
            found[labels[len(prefix) : -2]] = float(value)
    return found


async def test_envelope_errors_over_http_are_counted_like_amqp(api: Ingest) -> None:
    before = await _rejected(api)
    for body in [{"data": {}}, {"type": "Bad Type"}, {"type": "a.b", "extra": 1}, [1]]:
        status, _, _ = await api.call("POST", "/v1/events", body)
        assert status == 422
    status, _, _ = await api.call(
        "POST", "/v1/events", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert status == 400
    after = await _rejected(api)
    counted = {reason: after[reason] - before.get(reason, 0.0) for reason in after}
    assert {reason: n for reason, n in counted.items() if n} == {
        "missing_type": 1,
        "invalid_type": 1,
        "invalid_envelope": 1,
        "not_object": 1,
        "not_json": 1,
    }


async def test_schema_checks_data_over_http(api: Ingest) -> None:
    schema = {
        "type": "object",
        "properties": {"items": {"type": "array", "items": {"required": ["sku"]}}},
    }
    status, created, resp = await api.call(
        "POST", "/v1/event-types", {"name": "order.created", "description": "d", "schema": schema}
    )
    assert status == 201 and created["schema"] == schema
    assert resp.headers["Location"] == "/v1/event-types/order.created"

    status, problem, _ = await api.call(
        "POST", "/v1/events", {"type": "order.created", "data": {"items": [{"sku": 1}, {}]}}
    )
    assert status == 422
    assert [e["field"] for e in problem["errors"]] == ["body.data.items.1"]
    assert "sku" in problem["errors"][0]["message"]

    ok = {"type": "order.created", "data": {"items": [{"sku": "a"}]}}
    status, _, _ = await api.call("POST", "/v1/events", ok)
    assert status == 202


async def test_event_types_crud(api: Ingest) -> None:
    for name in ("a.one", "b.two", "c.three"):
        status, _, _ = await api.call("POST", "/v1/event-types", {"name": name})
        assert status == 201
    status, problem, _ = await api.call("POST", "/v1/event-types", {"name": "a.one"})
    assert status == 409 and problem["status"] == 409

    status, page, _ = await api.call("GET", "/v1/event-types?limit=2")
    assert [t["name"] for t in page["data"]] == ["a.one", "b.two"]
    status, page, _ = await api.call("GET", f"/v1/event-types?cursor={page['next_cursor']}")
    assert [t["name"] for t in page["data"]] == ["c.three"] and page["next_cursor"] is None

    status, changed, _ = await api.call(
        "PATCH", "/v1/event-types/b.two", {"schema": {"type": "object"}, "description": "two"}
    )
    assert status == 200
    assert changed["schema"] == {"type": "object"} and changed["description"] == "two"
    status, changed, _ = await api.call("PATCH", "/v1/event-types/b.two", {"schema": None})
    assert changed["schema"] is None and changed["description"] == "two"

    status, _, _ = await api.call("DELETE", "/v1/event-types/b.two")
    assert status == 204
    for method in ("GET", "DELETE"):
        status, _, _ = await api.call(method, "/v1/event-types/b.two")
        assert status == 404
    status, _, _ = await api.call("PATCH", "/v1/event-types/b.two", {"description": "x"})
    assert status == 404


async def test_an_invalid_schema_is_refused(api: Ingest) -> None:
    status, problem, _ = await api.call(
        "POST",
        "/v1/event-types",
        {"name": "bad.schema", "schema": {"type": "no-such-type"}, "description": 5},
    )
    assert status == 422
    fields = sorted(e["field"] for e in problem["errors"])
    assert fields == ["body.description", "body.schema"]
    assert "JSON Schema" in orjson.dumps(problem).decode()
