"""Idempotency keys per tenant, within a window, over HTTP and AMQP (issue 16)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import orjson
import pytest

from shared.metrics import REGISTRY
from shared.models import EventIn
from shared.settings import Settings
from shared.wire.messages import H_ERROR, H_REASON, H_TENANT_ID
from tests.integration.test_ingest_replicas import _accept_until_done, _replica
from tests.support.ingest import Ingest, running_ingest


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Ingest]:
    async with running_ingest(settings) as running:
        yield running


async def _sql(api: Ingest, query: str, *args: object) -> None:
    conn = await asyncpg.connect(api.settings.database_url.get_secret_value())
    try:
        await conn.execute(query, *args)
    finally:
        await conn.close()


def _rejected(reason: str) -> float:
    return REGISTRY.get_sample_value("hookline_events_rejected_total", {"reason": reason}) or 0.0


async def _post_raw(api: Ingest, raw: bytes) -> tuple[int, dict[str, object]]:
    status, body, _ = await api.call(
        "POST", "/v1/events", data=raw, headers={"Content-Type": "application/json"}
    )
    return status, body


async def test_two_tenants_with_one_key_each_get_their_own_event(api: Ingest) -> None:
    acme = {"type": "order.created", "data": {"who": "acme"}, "id": "order-1", "tenant_id": "acme"}
    globex = {**acme, "data": {"who": "globex"}, "tenant_id": "globex"}
    untenanted = {k: v for k, v in acme.items() if k != "tenant_id"} | {"data": {"who": None}}
    answers = {}
    for body in (acme, globex, untenanted):
        status, event, _ = await api.call("POST", "/v1/events", body)
        assert status == 202, event
        answers[body.get("tenant_id")] = event
    assert len({e["id"] for e in answers.values()}) == 3
    for body in (acme, globex, untenanted):
        status, again, _ = await api.call("POST", "/v1/events", body)
        first = answers[body.get("tenant_id")]
        assert status == 200 and again["id"] == first["id"]
        assert again["data"] == body["data"] and again["tenant_id"] == body.get("tenant_id")
    published = await api.take(api.events, 4, timeout_s=3)
    assert sorted(m.headers["x-hookline-event-id"] for m in published) == sorted(
        e["id"] for e in answers.values()
    )


async def test_a_key_past_its_window_makes_a_new_event(api: Ingest) -> None:
    body = {"type": "order.created", "data": {"n": 1}, "id": "order-w", "tenant_id": "acme"}
    _, first, _ = await api.call("POST", "/v1/events", body)
    # Within the window, also with other data (no conflict is checked past it).
    status, again, _ = await api.call("POST", "/v1/events", body)
    assert status == 200 and again["id"] == first["id"]
    await _sql(
        api,
        "UPDATE idempotency_keys SET accepted_at = accepted_at - interval '24 hours 1 second'",
    )
    status, later, _ = await api.call("POST", "/v1/events", {**body, "data": {"n": 2}})
    assert status == 202, later
    assert later["id"] != first["id"] and later["data"] == {"n": 2}
    # The window of the new event runs from its own acceptance.
    status, again, _ = await api.call("POST", "/v1/events", {**body, "data": {"n": 2}})
    assert status == 200 and again["id"] == later["id"]
    published = await api.take(api.events, 3, timeout_s=3)
    assert [m.headers["x-hookline-event-id"] for m in published] == [first["id"], later["id"]]


async def test_a_duplicate_does_not_move_the_window(api: Ingest) -> None:
    body = {"type": "order.created", "data": {"n": 1}, "id": "order-fixed"}
    _, first, _ = await api.call("POST", "/v1/events", body)
    await _sql(api, "UPDATE idempotency_keys SET accepted_at = accepted_at - interval '23 hours'")
    status, _, _ = await api.call("POST", "/v1/events", body)
    assert status == 200
    await _sql(api, "UPDATE idempotency_keys SET accepted_at = accepted_at - interval '1 hour'")
    status, later, _ = await api.call("POST", "/v1/events", body)
    assert status == 202 and later["id"] != first["id"]


async def test_a_key_reused_for_other_data_or_type_answers_409(api: Ingest) -> None:
    body = {"type": "order.created", "data": {"n": 1}, "id": "order-c", "tenant_id": "acme"}
    _, first, _ = await api.call("POST", "/v1/events", body)
    before = _rejected("idempotency_conflict")
    for changed in ({"data": {"n": 2}}, {"type": "order.deleted"}, {"data": {"n": True}}):
        status, problem, resp = await api.call("POST", "/v1/events", {**body, **changed})
        assert status == 409, problem
        assert resp.content_type == "application/problem+json"
        assert first["id"] in problem["detail"]
    assert _rejected("idempotency_conflict") == before + 3
    [published] = await api.take(api.events, 2, timeout_s=2)
    assert published.headers["x-hookline-event-id"] == first["id"]


async def test_key_order_and_number_spelling_are_no_conflict(api: Ingest) -> None:
    status, first = await _post_raw(
        api,
        b'{"type": "order.created", "id": "k-json", "data": {"a": 1, "b": {"x": 2.5, "y": [1]}}}',
    )
    assert status == 202, first
    for raw in (
        b'{"id": "k-json", "data": {"b": {"y": [1.0], "x": 25e-1}, "a": 1.0},'
        b' "type": "order.created"}',
        b'{"type": "order.created", "id": "k-json",'
        b' "data": {"b": {"y": [1E0], "x": 2.50}, "a": 10e-1}}',
    ):
        status, again = await _post_raw(api, raw)
        assert status == 200, again
        assert again["id"] == first["id"]


async def test_an_empty_tenant_is_refused(api: Ingest) -> None:
    status, problem, _ = await api.call(
        "POST", "/v1/events", {"type": "order.created", "id": "k", "tenant_id": ""}
    )
    assert status == 422
    assert [e["field"] for e in problem["errors"]] == ["body.tenant_id"]
    body = orjson.dumps({"type": "order.created", "id": "k", "tenant_id": ""})
    await api.publish(body)
    [rejected] = await api.take(await api.rejected_queue(), 1)
    assert rejected.body == body and "tenant_id" in rejected.headers[H_ERROR]
    assert await api.take(api.events, 1, timeout_s=0.5) == []


async def test_over_amqp_scopes_windows_and_conflicts_hold(api: Ingest) -> None:
    acme = {"type": "order.created", "data": {"a": 1, "b": 2}, "id": "o-1", "tenant_id": "acme"}
    await api.publish(acme)
    await api.publish({**acme, "tenant_id": "globex"})
    first = await api.take(api.events, 2, timeout_s=30)
    assert {m.headers[H_TENANT_ID] for m in first} == {"acme", "globex"}
    before = _rejected("idempotency_conflict")
    await api.publish(
        b'{"type": "order.created", "data": {"b": 2.0, "a": 1}, "id": "o-1", "tenant_id": "acme"}'
    )
    conflicting = orjson.dumps({**acme, "data": {"a": 1, "b": 3}})
    await api.publish(conflicting)
    [rejected] = await api.take(await api.rejected_queue(), 1, timeout_s=30)
    assert rejected.body == conflicting
    assert rejected.headers[H_REASON] == "idempotency_conflict"
    assert first[0].headers["x-hookline-event-id"] in rejected.headers[H_ERROR]
    assert _rejected("idempotency_conflict") == before + 1
    assert await api.take(api.events, 1, timeout_s=1) == []
    await _sql(api, "UPDATE idempotency_keys SET accepted_at = now() - interval '2 days'")
    await api.publish({**acme, "data": {"a": 1, "b": 3}})
    [renewed] = await api.take(api.events, 1, timeout_s=30)
    assert renewed.headers[H_TENANT_ID] == "acme"
    assert renewed.headers["x-hookline-event-id"] not in {
        m.headers["x-hookline-event-id"] for m in first
    }


async def test_two_ingests_keep_each_tenants_key_once(settings: Settings) -> None:
    """Replicas given the same keys of three scopes at once store one event per scope."""
    async with _replica(settings) as one, _replica(settings) as two:
        events = [
            EventIn(
                type="order.created", data={"n": n, "t": tenant}, id=f"key-{n}", tenant_id=tenant
            )
            for n in range(10)
            for tenant in ("acme", "globex", None)
        ]
        ids = await asyncio.gather(
            *(_accept_until_done(intake, e) for e in events for intake in (one, two))
        )
    assert ids[0::2] == ids[1::2]
    assert len(set(ids)) == len(events)
    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    try:
        stored = await conn.fetchval("SELECT count(*) FROM events")
        keys = await conn.fetchval("SELECT count(*) FROM idempotency_keys")
    finally:
        await conn.close()
    assert stored == keys == len(events)
