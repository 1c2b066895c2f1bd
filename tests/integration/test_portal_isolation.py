"""Portal tokens, probed as an attacker holding one would: nothing of another tenant shows."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from services.api.schemas import encode_cursor
from shared.ids import delivery_id
from shared.settings import Settings
from tests.support.ingest import Ingest, running_ingest
from tests.support.portal import World, make_world, portal_call


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Ingest]:
    async with running_ingest(settings) as running:
        yield running


@pytest.fixture
async def world(api: Ingest) -> World:
    return await make_world(api)


async def _execute(api: Ingest, sql: str, *args: object) -> None:
    conn = await asyncpg.connect(api.settings.database_url.get_secret_value())
    try:
        await conn.execute(sql, *args)
    finally:
        await conn.close()


async def test_its_events_do_not_show_deliveries_to_another_tenants_subscription(
    api: Ingest, world: World
) -> None:
    """A delivery of its event to a subscription now of another tenant (an operator moved
    it) is that tenant's: neither its id nor its status shows in the event or the list."""
    theirs = delivery_id(world.own.event, world.other.subscription)
    await _execute(
        api,
        "INSERT INTO deliveries (id, event_id, subscription_id, status)"
        " VALUES ($1, $2, $3, 'succeeded')",
        theirs,
        world.own.event,
        world.other.subscription,
    )
    status, event = await portal_call(api, world, "GET", f"/v1/events/{world.own.event}")
    assert status == 200
    assert [d["id"] for d in event["deliveries"]] == [world.own.delivery]
    status, page = await portal_call(api, world, "GET", "/v1/events")
    assert status == 200
    [listed] = page["data"]
    assert listed["delivery_counts"] == {"pending": 0, "succeeded": 0, "failed": 1, "cancelled": 0}
    status, _ = await portal_call(api, world, "GET", f"/v1/deliveries/{theirs}")
    assert status == 404
    # The operator sees both.
    status, event, _ = await api.call("GET", f"/v1/events/{world.own.event}")
    assert sorted(d["id"] for d in event["deliveries"]) == sorted([world.own.delivery, theirs])
    status, page, _ = await api.call("GET", "/v1/events?tenant_id=acme")
    assert page["data"][0]["delivery_counts"]["succeeded"] == 1


async def test_a_cursor_naming_another_tenants_rows_pages_its_own_only(
    api: Ingest, world: World
) -> None:
    """A cursor is a position, not a permission: one made up from another tenant's ids (or
    the start of every id) still pages through the token's own tenant only."""
    for first in ("", world.other.subscription, world.untenanted.subscription):
        cursor = encode_cursor([first])
        status, page = await portal_call(api, world, "GET", f"/v1/subscriptions?cursor={cursor}")
        assert status == 200
        assert {s["tenant_id"] for s in page["data"]} <= {"acme"}
    cursor = encode_cursor(["9999-01-01T00:00:00+00:00", "evt_~"])
    status, page = await portal_call(api, world, "GET", f"/v1/events?cursor={cursor}&limit=500")
    assert status == 200
    assert [e["id"] for e in page["data"]] == [world.own.event]


async def test_answers_with_secrets_or_tokens_are_not_cached(api: Ingest, world: World) -> None:
    for path in (f"/v1/subscriptions/{world.own.subscription}", "/v1/whoami"):
        status, _, resp = await api.call("GET", path, auth=False, headers=world.auth)
        assert status == 200 and resp.headers["Cache-Control"] == "no-store"
    status, _, resp = await api.call("POST", "/v1/portal-sessions", {"tenant_id": "acme"})
    assert status == 201 and resp.headers["Cache-Control"] == "no-store"


async def test_a_subscription_it_was_given_keeps_the_old_tenants_deliveries_from_it(
    api: Ingest, world: World
) -> None:
    """An operator moves globex's subscription to acme: acme may use it from now on, but
    globex's past deliveries (what globex's endpoint answered, globex's events) are not
    acme's to read or to send again, to an endpoint acme may have changed."""
    given = f"/v1/subscriptions/{world.other.subscription}"
    status, _, _ = await api.call("PATCH", given, {"tenant_id": "acme"})
    assert status == 200
    status, sub = await portal_call(api, world, "GET", given)
    assert status == 200 and sub["tenant_id"] == "acme"
    status, page = await portal_call(api, world, "GET", f"{given}/deliveries")
    assert status == 200 and page["data"] == []
    status, _ = await portal_call(api, world, "GET", f"/v1/deliveries/{world.other.delivery}")
    assert status == 404
    retry = f"/v1/deliveries/{world.other.delivery}/retry"
    status, _ = await portal_call(api, world, "POST", retry)
    assert status == 404
    since = {"since": "2000-01-01T00:00:00Z"}
    status, recovered = await portal_call(api, world, "POST", f"{given}/recover", since)
    assert status == 202 and recovered == {"queued": 0}
    status, delivery, _ = await api.call("GET", f"/v1/deliveries/{world.other.delivery}")
    assert status == 200 and delivery["status"] == "failed" and delivery["attempts"] == 0
    # Its own deliveries from now on are its own: a test event shows and can be retried.
    status, test = await portal_call(api, world, "POST", f"{given}/test")
    assert status == 202
    status, page = await portal_call(api, world, "GET", f"{given}/deliveries")
    assert [d["id"] for d in page["data"]] == [test["id"]]
    status, _ = await portal_call(api, world, "GET", f"/v1/deliveries/{test['id']}")
    assert status == 200
