"""The subscriptions resource over HTTP, against real Postgres and RabbitMQ."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from shared.ids import delivery_id, new_id
from shared.settings import Settings
from shared.signing import generate_secret
from tests.support.ingest import Ingest, running_ingest


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Ingest]:
    async with running_ingest(settings) as running:
        yield running


NEW = {"url": "http://127.0.0.1:9/hooks", "event_types": ["invoice.*", "order.created"]}


async def test_create_shows_the_secret_and_get_returns_it(api: Ingest) -> None:
    status, created, resp = await api.call("POST", "/v1/subscriptions", NEW)
    assert status == 201, created
    assert resp.headers["Location"] == f"/v1/subscriptions/{created['id']}"
    assert created["secret"].startswith("whsec_")
    assert created["status"] == "enabled" and created["disabled_reason"] is None
    assert created["event_types"] == NEW["event_types"]

    status, fetched, _ = await api.call("GET", f"/v1/subscriptions/{created['id']}")
    assert status == 200
    assert fetched["secret"] == created["secret"]


async def test_a_given_secret_is_kept_and_an_invalid_one_refused(api: Ingest) -> None:
    secret = generate_secret(24)
    status, created, _ = await api.call("POST", "/v1/subscriptions", {**NEW, "secret": secret})
    assert status == 201 and created["secret"] == secret

    status, problem, _ = await api.call(
        "POST", "/v1/subscriptions", {**NEW, "secret": "whsec_c2hvcnQ="}
    )
    assert status == 422
    assert [e["field"] for e in problem["errors"]] == ["body.secret"]


async def test_every_invalid_field_is_listed(api: Ingest) -> None:
    body = {
        "url": "ftp://user:pw@example.com/",
        "event_types": ["Invoice.Paid", "ok.type"],
        "description": "x" * 2000,
        "tenant_id": "bad tenant!",
        "extra": 1,
    }
    status, problem, resp = await api.call("POST", "/v1/subscriptions", body)
    assert status == 422
    assert resp.content_type == "application/problem+json"
    fields = sorted(e["field"] for e in problem["errors"])
    assert fields == [
        "body.description",
        "body.event_types.0",
        "body.extra",
        "body.tenant_id",
        "body.url",
    ]
    assert problem["status"] == 422 and problem["title"] and problem["type"]


async def test_url_with_credentials_and_empty_patterns_are_refused(api: Ingest) -> None:
    body = {"url": "https://user:pw@example.com/", "event_types": []}
    status, problem, _ = await api.call("POST", "/v1/subscriptions", body)
    assert status == 422
    messages = {e["field"]: e["message"] for e in problem["errors"]}
    assert "user name or password" in messages["body.url"]
    assert "body.event_types" in messages


async def test_private_targets_are_refused_unless_allowed(settings: Settings) -> None:
    strict = settings.model_copy(update={"allow_private_targets": False})
    async with running_ingest(strict) as api:
        status, problem, _ = await api.call("POST", "/v1/subscriptions", NEW)
    assert status == 422
    assert problem["errors"][0]["field"] == "body.url"
    assert "loopback" in problem["errors"][0]["message"]


async def test_lists_hide_secrets_and_page_with_cursors(api: Ingest) -> None:
    ids = []
    for _ in range(5):
        _, created, _ = await api.call("POST", "/v1/subscriptions", NEW)
        ids.append(created["id"])
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        query = "?limit=2" + (f"&cursor={cursor}" if cursor else "")
        status, page, _ = await api.call("GET", "/v1/subscriptions" + query)
        assert status == 200
        assert all("secret" not in item for item in page["data"])
        seen.extend(item["id"] for item in page["data"])
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids
    assert pages == 3


async def test_filters(api: Ingest) -> None:
    _, invoices, _ = await api.call("POST", "/v1/subscriptions", NEW)
    _, orders, _ = await api.call(
        "POST", "/v1/subscriptions", {**NEW, "event_types": ["order.*"], "tenant_id": "acme"}
    )
    _, everything, _ = await api.call("POST", "/v1/subscriptions", {**NEW, "event_types": ["*"]})
    await api.call("PATCH", f"/v1/subscriptions/{everything['id']}", {"status": "disabled"})

    async def ids(query: str) -> list[str]:
        status, page, _ = await api.call("GET", "/v1/subscriptions?" + query)
        assert status == 200, page
        return [s["id"] for s in page["data"]]

    assert await ids("event_type=invoice.paid") == [invoices["id"], everything["id"]]
    assert await ids("event_type=order.*") == [orders["id"]]
    assert await ids("tenant_id=acme") == [orders["id"]]
    assert await ids("status=disabled") == [everything["id"]]
    assert await ids("status=enabled&event_type=order.created") == [invoices["id"], orders["id"]]


async def test_bad_list_parameters_are_422(api: Ingest) -> None:
    for query, field in [
        ("limit=0", "query.limit"),
        ("limit=501", "query.limit"),
        ("limit=abc", "query.limit"),
        ("cursor=nonsense", "query.cursor"),
        ("status=paused", "query.status"),
        ("event_type=Not A Type", "query.event_type"),
    ]:
        status, problem, _ = await api.call("GET", "/v1/subscriptions?" + query)
        assert status == 422, query
        assert [e["field"] for e in problem["errors"]] == [field], query


async def test_patch_changes_given_fields_and_reenables(api: Ingest) -> None:
    _, created, _ = await api.call("POST", "/v1/subscriptions", {**NEW, "tenant_id": "t1"})
    path = f"/v1/subscriptions/{created['id']}"

    status, disabled, _ = await api.call("PATCH", path, {"status": "disabled"})
    assert status == 200
    assert (disabled["status"], disabled["disabled_reason"]) == ("disabled", "manual")
    assert disabled["url"] == NEW["url"] and disabled["tenant_id"] == "t1"

    status, changed, _ = await api.call(
        "PATCH", path, {"status": "enabled", "description": "billing", "tenant_id": None}
    )
    assert status == 200
    assert (changed["status"], changed["disabled_reason"]) == ("enabled", None)
    assert changed["description"] == "billing" and changed["tenant_id"] is None
    assert changed["event_types"] == NEW["event_types"]

    status, problem, _ = await api.call("PATCH", path, {"url": None, "event_types": []})
    assert status == 422
    assert sorted(e["field"] for e in problem["errors"]) == ["body.event_types", "body.url"]


async def test_rotation_keeps_the_old_secret_for_a_day(api: Ingest) -> None:
    _, created, _ = await api.call("POST", "/v1/subscriptions", NEW)
    path = f"/v1/subscriptions/{created['id']}/secret/rotate"
    status, rotated, _ = await api.call("POST", path)
    assert status == 200
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != created["secret"]
    assert rotated["previous_secret_expires_at"] is not None

    conn = await asyncpg.connect(api.settings.database_url.get_secret_value())
    try:
        row = await conn.fetchrow(
            "SELECT secret, previous_secret,"
            " previous_secret_expires_at - now() > interval '23 hours' AS day_left"
            " FROM subscriptions WHERE id = $1",
            created["id"],
        )
    finally:
        await conn.close()
    assert row["previous_secret"] == created["secret"]
    assert row["secret"] == rotated["secret"]
    assert row["day_left"]

    chosen = generate_secret(40)
    status, again, _ = await api.call("POST", path, {"secret": chosen})
    assert status == 200 and again["secret"] == chosen


async def test_delete_cancels_pending_deliveries_and_hides_it(api: Ingest) -> None:
    _, created, _ = await api.call("POST", "/v1/subscriptions", NEW)
    sub_id = created["id"]
    conn = await asyncpg.connect(api.settings.database_url.get_secret_value())
    try:
        event_id = new_id("evt")
        await conn.execute(
            "INSERT INTO events (id, type, data, source) VALUES ($1, 'invoice.paid', '{}', 'http')",
            event_id,
        )
        pending, done = delivery_id(event_id, sub_id), "dlv_done"
        await conn.executemany(
            "INSERT INTO deliveries (id, event_id, subscription_id, status)"
            " VALUES ($1, $2, $3, $4)",
            [(pending, event_id, sub_id, "pending"), (done, event_id, sub_id, "succeeded")],
        )
        status, _, _ = await api.call("DELETE", f"/v1/subscriptions/{sub_id}")
        assert status == 204
        rows = dict(await conn.fetch("SELECT id, status FROM deliveries ORDER BY id"))
    finally:
        await conn.close()
    assert rows == {pending: "cancelled", done: "succeeded"}
    for method in ("GET", "DELETE"):
        status, problem, _ = await api.call(method, f"/v1/subscriptions/{sub_id}")
        assert status == 404 and problem["status"] == 404
    status, page, _ = await api.call("GET", "/v1/subscriptions")
    assert page["data"] == []


async def test_unknown_subscription_is_404_everywhere(api: Ingest) -> None:
    for method, path, body in [
        ("GET", "/v1/subscriptions/sub_nope", None),
        ("PATCH", "/v1/subscriptions/sub_nope", {"description": "x"}),
        ("DELETE", "/v1/subscriptions/sub_nope", None),
        ("POST", "/v1/subscriptions/sub_nope/secret/rotate", None),
    ]:
        status, problem, resp = await api.call(method, path, body)
        assert status == 404, (method, path)
        assert resp.content_type == "application/problem+json"
        assert problem["detail"]
