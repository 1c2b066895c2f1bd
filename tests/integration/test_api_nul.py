"""A NUL character (\\u0000) anywhere in a request is a 4xx naming where, never a 500.

Postgres text and jsonb cannot hold one, so an API that passed it on would fail at the
INSERT; the request layer refuses it before any handler runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from services.api.schemas import encode_cursor
from shared.settings import Settings
from shared.wire.messages import H_ERROR, H_REASON
from tests.support.ingest import Ingest, running_ingest

SUB = {"url": "http://127.0.0.1:9/hooks", "event_types": ["invoice.*"]}


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Ingest]:
    async with running_ingest(settings) as running:
        yield running


async def _subscription(api: Ingest) -> str:
    status, sub, _ = await api.call("POST", "/v1/subscriptions", SUB)
    assert status == 201, sub
    return str(sub["id"])


async def test_a_nul_in_a_body_field_is_422_naming_the_field(api: Ingest) -> None:
    sub = await _subscription(api)
    status, _, _ = await api.call("POST", "/v1/event-types", {"name": "invoice.paid"})
    assert status == 201
    calls: list[tuple[str, str, Any, str]] = [
        ("POST", "/v1/subscriptions", {**SUB, "description": "a\u0000b"}, "body.description"),
        ("POST", "/v1/subscriptions", {**SUB, "url": "http://x.test/\u0000"}, "body.url"),
        ("POST", "/v1/subscriptions", {**SUB, "tenant_id": "acme\u0000"}, "body.tenant_id"),
        ("POST", "/v1/subscriptions", {**SUB, "event_types": ["a.\u0000"]}, "body.event_types.0"),
        ("PATCH", f"/v1/subscriptions/{sub}", {"description": "\u0000"}, "body.description"),
        ("POST", "/v1/event-types", {"name": "order.paid", "description": "\u0000"},
         "body.description"),
        ("PATCH", "/v1/event-types/invoice.paid", {"description": "x\u0000"},
         "body.description"),
        ("POST", "/v1/portal-sessions", {"tenant_id": "a\u0000"}, "body.tenant_id"),
        ("POST", "/v1/events", {"type": "invoice.paid", "tenant_id": "a\u0000"},
         "body.tenant_id"),
        ("POST", "/v1/events", {"type": "invoice.paid", "data": {"s": "\u0000"}}, "body.data"),
    ]  # fmt: skip
    for method, path, body, field in calls:
        status, problem, _ = await api.call(method, path, body)
        assert status == 422, (method, path, problem)
        assert field in [e["field"] for e in problem["errors"]], (method, path, problem)
    status, kept, _ = await api.call("GET", f"/v1/subscriptions/{sub}")
    assert status == 200 and kept["description"] == ""
    status, page, _ = await api.call("GET", "/v1/event-types")
    assert [(t["name"], t["description"]) for t in page["data"]] == [("invoice.paid", "")]


async def test_a_nul_in_a_query_parameter_or_cursor_is_422(api: Ingest) -> None:
    await _subscription(api)
    bad_cursor = encode_cursor(["sub_\u0000"])
    bad_time_cursor = encode_cursor(["2026-01-01T00:00:00+00:00", "evt_\u0000"])
    calls = [
        ("/v1/subscriptions?tenant_id=%00", "query.tenant_id"),
        ("/v1/subscriptions?event_type=a%00", "query.event_type"),
        ("/v1/events?tenant_id=acme%00", "query.tenant_id"),
        (f"/v1/subscriptions?cursor={bad_cursor}", "query.cursor"),
        (f"/v1/events?cursor={bad_time_cursor}", "query.cursor"),
    ]
    for path, field in calls:
        status, problem, _ = await api.call("GET", path)
        assert status == 422, (path, problem)
        assert [e["field"] for e in problem["errors"]] == [field], (path, problem)


async def test_a_nul_in_an_id_of_the_path_is_404(api: Ingest) -> None:
    calls = [
        ("GET", "/v1/subscriptions/sub_%00"),
        ("DELETE", "/v1/subscriptions/sub_%00"),
        ("GET", "/v1/subscriptions/sub_%00/deliveries"),
        ("GET", "/v1/events/evt_%00"),
        ("GET", "/v1/deliveries/dlv_%00"),
        ("POST", "/v1/deliveries/dlv_%00/retry"),
        ("GET", "/v1/event-types/a.b%00"),
        ("DELETE", "/v1/portal-sessions/ps_%00"),
    ]
    for method, path in calls:
        status, problem, _ = await api.call(method, path)
        assert status == 404, (method, path, problem)
        assert problem["status"] == 404


async def test_an_amqp_event_with_a_nul_is_rejected_with_its_field_not_requeued(
    api: Ingest,
) -> None:
    bad = [
        {"type": "invoice.paid", "id": "key\u0000"},
        {"type": "invoice.paid", "tenant_id": "acme\u0000"},
        {"type": "invoice.paid", "data": {"a\u0000b": 1}},
    ]
    for body in bad:
        await api.publish(orjson.dumps(body))
    await api.publish({"type": "invoice.paid", "data": {"ok": True}})
    rejected = await api.take(await api.rejected_queue(), 3)
    assert [m.headers[H_REASON] for m in rejected] == ["invalid_envelope"] * 3
    errors = sorted(str(m.headers[H_ERROR]).split(":")[0] for m in rejected)
    assert errors == ["data", "id", "tenant_id"]
    [accepted] = await api.take(api.events, 1)
    assert orjson.loads(accepted.body)["data"] == {"ok": True}
    assert await api.take(await api.rejected_queue(), 1, timeout_s=0.5) == []
