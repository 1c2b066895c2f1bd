"""Portal tokens (CONTRACT section 3): what a tenant-scoped token may see and do, over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from shared.settings import Settings
from shared.wire.messages import DeliveryMessage
from tests.support.ingest import Ingest, running_ingest
from tests.support.portal import World, make_world, portal_call


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Ingest]:
    async with running_ingest(settings) as running:
        yield running


@pytest.fixture
async def world(api: Ingest) -> World:
    return await make_world(api)


async def test_a_session_has_a_scoped_token_and_a_link_with_it_in_the_fragment(
    api: Ingest, world: World
) -> None:
    session = world.session
    assert session["id"].startswith("ps_") and session["tenant_id"] == "acme"
    assert session["url"] == f"{api.base}/ui/#key={session['token']}"
    lifetime = datetime.fromisoformat(session["expires_at"]) - datetime.now(UTC)
    assert timedelta(minutes=55) < lifetime <= timedelta(hours=1)
    status, me = await portal_call(api, world, "GET", "/v1/whoami")
    assert status == 200 and me["kind"] == "portal" and me["tenant_id"] == "acme"


@pytest.mark.parametrize("ttl", ["25h", "24h1s", "0s", "soon", 3600])
async def test_a_ttl_beyond_24h_or_not_a_duration_is_422(api: Ingest, ttl: object) -> None:
    status, problem, _ = await api.call(
        "POST", "/v1/portal-sessions", {"tenant_id": "acme", "ttl": ttl}
    )
    assert status == 422, problem
    assert [e["field"] for e in problem["errors"]] == ["body.ttl"]


async def test_24h_is_the_longest_ttl(api: Ingest) -> None:
    status, session, _ = await api.call(
        "POST", "/v1/portal-sessions", {"tenant_id": "acme", "ttl": "24h"}
    )
    assert status == 201
    lifetime = datetime.fromisoformat(session["expires_at"]) - datetime.now(UTC)
    assert timedelta(hours=23) < lifetime <= timedelta(hours=24)


async def test_a_portal_token_cannot_create_or_revoke_sessions(api: Ingest, world: World) -> None:
    status, _ = await portal_call(api, world, "POST", "/v1/portal-sessions", {"tenant_id": "acme"})
    assert status == 403
    status, _ = await portal_call(
        api, world, "DELETE", f"/v1/portal-sessions/{world.session['id']}"
    )
    assert status == 403
    status, _ = await portal_call(api, world, "GET", "/v1/whoami")
    assert status == 200


async def test_lists_show_only_its_tenant(api: Ingest, world: World) -> None:
    status, page = await portal_call(api, world, "GET", "/v1/subscriptions")
    assert status == 200
    assert [s["id"] for s in page["data"]] == [world.own.subscription]
    status, page = await portal_call(api, world, "GET", "/v1/events")
    assert [e["id"] for e in page["data"]] == [world.own.event]
    status, page = await portal_call(api, world, "GET", "/v1/subscriptions?tenant_id=acme")
    assert [s["id"] for s in page["data"]] == [world.own.subscription]
    path = f"/v1/subscriptions/{world.own.subscription}/deliveries"
    status, page = await portal_call(api, world, "GET", path)
    assert [d["id"] for d in page["data"]] == [world.own.delivery]
    status, event = await portal_call(api, world, "GET", f"/v1/events/{world.own.event}")
    assert status == 200 and [d["id"] for d in event["deliveries"]] == [world.own.delivery]
    status, delivery = await portal_call(api, world, "GET", f"/v1/deliveries/{world.own.delivery}")
    assert status == 200 and delivery["subscription_id"] == world.own.subscription


async def test_another_tenants_resources_are_404(api: Ingest, world: World) -> None:
    for other in (world.other, world.untenanted):
        sub = f"/v1/subscriptions/{other.subscription}"
        since = {"since": "2000-01-01T00:00:00Z"}
        calls = [
            ("GET", sub, None),
            ("PATCH", sub, {"description": "mine now"}),
            ("DELETE", sub, None),
            ("POST", f"{sub}/secret/rotate", None),
            ("GET", f"{sub}/deliveries", None),
            ("POST", f"{sub}/recover", since),
            ("POST", f"{sub}/test", None),
            ("GET", f"/v1/events/{other.event}", None),
            ("GET", f"/v1/deliveries/{other.delivery}", None),
            ("POST", f"/v1/deliveries/{other.delivery}/retry", None),
        ]
        for method, path, body in calls:
            status, problem = await portal_call(api, world, method, path, body)
            assert status == 404, (method, path, problem)
    # Untouched: the operator still sees them as they were.
    status, sub, _ = await api.call("GET", f"/v1/subscriptions/{world.other.subscription}")
    assert status == 200 and sub["description"] == "" and sub["tenant_id"] == "globex"


async def test_naming_another_tenant_is_403(api: Ingest, world: World) -> None:
    new = {"url": "http://127.0.0.1:9/x", "event_types": ["*"]}
    own_sub = f"/v1/subscriptions/{world.own.subscription}"
    calls = [
        ("GET", "/v1/subscriptions?tenant_id=globex", None),
        ("GET", "/v1/events?tenant_id=globex", None),
        ("POST", "/v1/subscriptions", {**new, "tenant_id": "globex"}),
        ("PATCH", own_sub, {"tenant_id": "globex"}),
        ("PATCH", own_sub, {"tenant_id": None}),
    ]
    for method, path, body in calls:
        status, problem = await portal_call(api, world, method, path, body)
        assert status == 403, (method, path, problem)
        assert problem["errors"][0]["field"] in ("query.tenant_id", "body.tenant_id")
    status, sub, _ = await api.call("GET", own_sub)
    assert sub["tenant_id"] == "acme"


async def test_a_subscription_it_creates_gets_its_tenant(api: Ingest, world: World) -> None:
    new = {"url": "http://127.0.0.1:9/new", "event_types": ["order.*"]}
    status, created = await portal_call(api, world, "POST", "/v1/subscriptions", new)
    assert status == 201 and created["tenant_id"] == "acme" and created["secret"]
    status, again = await portal_call(
        api, world, "POST", "/v1/subscriptions", {**new, "tenant_id": "acme"}
    )
    assert status == 201 and again["tenant_id"] == "acme"
    path = f"/v1/subscriptions/{created['id']}"
    status, changed = await portal_call(api, world, "PATCH", path, {"status": "disabled"})
    assert status == 200 and changed["status"] == "disabled"
    status, _ = await portal_call(api, world, "DELETE", path)
    assert status == 204


async def test_the_catalogue_is_read_only(api: Ingest, world: World) -> None:
    status, _, _ = await api.call(
        "POST", "/v1/event-types", {"name": "invoice.paid", "description": "paid"}
    )
    assert status == 201
    status, page = await portal_call(api, world, "GET", "/v1/event-types")
    assert status == 200 and [t["name"] for t in page["data"]] == ["invoice.paid"]
    status, _ = await portal_call(api, world, "GET", "/v1/event-types/invoice.paid")
    assert status == 200
    calls = [
        ("POST", "/v1/event-types", {"name": "order.created"}),
        ("PATCH", "/v1/event-types/invoice.paid", {"description": "changed"}),
        ("DELETE", "/v1/event-types/invoice.paid", None),
    ]
    for method, path, body in calls:
        status, _ = await portal_call(api, world, method, path, body)
        assert status == 403, (method, path)
    status, kept, _ = await api.call("GET", "/v1/event-types/invoice.paid")
    assert kept["description"] == "paid"


async def test_it_cannot_publish_events(api: Ingest, world: World) -> None:
    event = {"type": "invoice.paid", "data": {}, "tenant_id": "acme"}
    status, problem = await portal_call(api, world, "POST", "/v1/events", event)
    assert status == 403, problem
    status, page, _ = await api.call("GET", "/v1/events?tenant_id=acme")
    assert [e["id"] for e in page["data"]] == [world.own.event]


async def test_a_test_event_goes_to_its_own_subscription_only(api: Ingest, world: World) -> None:
    path = f"/v1/subscriptions/{world.own.subscription}/test"
    status, delivery = await portal_call(api, world, "POST", path)
    assert status == 202, delivery
    assert delivery["event_type"] == "hookline.test"
    assert delivery["subscription_id"] == world.own.subscription
    queue = await api.channel.get_queue(api.topology.deliveries_queue.name)
    [message] = await api.take(queue, 1)
    sent = DeliveryMessage.from_message(message)
    assert (sent.delivery_id, sent.subscription_id) == (delivery["id"], world.own.subscription)
    assert sent.event_type == "hookline.test"
    # Not on {ns}.events: fanout never sees it, so no other subscription can get it.
    published = await api.take(api.events, 10, timeout_s=0.5)
    assert [m.routing_key for m in published] == ["invoice.paid"] * 3  # the world's own
    status, page = await portal_call(api, world, "GET", "/v1/events?type=hookline.test")
    assert status == 200, page
    assert [e["id"] for e in page["data"]] == [delivery["event_id"]]
    assert page["data"][0]["tenant_id"] == "acme"


async def test_revoked_expired_and_unknown_tokens_are_401(api: Ingest, world: World) -> None:
    status, second, _ = await api.call("POST", "/v1/portal-sessions", {"tenant_id": "acme"})
    assert status == 201
    second_auth = {"Authorization": f"Bearer {second['token']}"}
    status, _, _ = await api.call("DELETE", f"/v1/portal-sessions/{world.session['id']}")
    assert status == 204
    status, problem = await portal_call(api, world, "GET", "/v1/subscriptions")
    assert status == 401, problem
    status, _, _ = await api.call("GET", "/v1/whoami", auth=False, headers=second_auth)
    assert status == 200

    conn = await asyncpg.connect(api.settings.database_url.get_secret_value())
    try:
        await conn.execute(
            "UPDATE portal_sessions SET expires_at = now() - interval '1 second' WHERE id = $1",
            second["id"],
        )
    finally:
        await conn.close()
    status, _, _ = await api.call("GET", "/v1/whoami", auth=False, headers=second_auth)
    assert status == 401
    unknown = {"Authorization": "Bearer hlp_not-a-token-anyone-was-given"}
    status, _, _ = await api.call("GET", "/v1/subscriptions", auth=False, headers=unknown)
    assert status == 401
    status, _, _ = await api.call("DELETE", "/v1/portal-sessions/ps_missing")
    assert status == 404


async def test_the_stored_token_is_a_hash(api: Ingest, world: World) -> None:
    conn = await asyncpg.connect(api.settings.database_url.get_secret_value())
    try:
        row = await conn.fetchrow("SELECT * FROM portal_sessions")
    finally:
        await conn.close()
    assert row is not None
    stored = " ".join(str(v) for v in dict(row).values())
    assert world.session["token"] not in stored
    assert world.session["token"].encode() not in row["token_hash"]
    assert row["created_by"].startswith("sha256:") and row["tenant_id"] == "acme"
