"""Fanout's routes and the sender's subscriptions read on demand from Postgres, bounded.

Matching rules (CONTRACT section 3) on real rows; concurrent misses share one query; the
memory bound holds; a remembered answer never outlives the change that made it wrong.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from shared.routing_cache import RoutingCache
from shared.secretbox import SecretBox
from shared.settings import Settings
from shared.subscription_cache import SubscriptionCache
from tests.support.fanout import eventually, insert_subscription


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    yield conn
    await conn.close()


@pytest.fixture
async def routes(settings: Settings) -> AsyncIterator[RoutingCache]:
    value = RoutingCache(settings.database_url.get_secret_value(), service="test")
    await value.start()
    yield value
    await value.close()


async def matched(routes: RoutingCache, event_type: str, tenant: str | None = None) -> list[str]:
    """The ids an event published now goes to, as fanout matches it (sync first)."""
    await routes.sync()
    return sorted(r.id for r in await routes.match(event_type, tenant))


async def test_exact_prefix_and_star(routes: RoutingCache, db: asyncpg.Connection) -> None:
    exact = await insert_subscription(db, ["invoice.paid"])
    prefix = await insert_subscription(db, ["invoice.*"])
    deep = await insert_subscription(db, ["billing.invoice.*"])
    star = await insert_subscription(db, ["*"])
    assert await matched(routes, "invoice.paid") == sorted([exact, prefix, star])
    assert await matched(routes, "invoice.line.added") == sorted([prefix, star])
    assert await matched(routes, "billing.invoice.paid") == sorted([deep, star])
    assert await matched(routes, "invoices.paid") == [star]


async def test_a_subscription_matching_twice_is_routed_once(
    routes: RoutingCache, db: asyncpg.Connection
) -> None:
    both = await insert_subscription(db, ["invoice.*", "invoice.paid", "*"], tenant_id="acme")
    assert await matched(routes, "invoice.paid", "acme") == [both]


async def test_tenant_rule_both_ways(routes: RoutingCache, db: asyncpg.Connection) -> None:
    untenanted = await insert_subscription(db, ["*"])
    acme = await insert_subscription(db, ["*"], tenant_id="acme")
    await insert_subscription(db, ["*"], tenant_id="globex")
    assert await matched(routes, "invoice.paid") == [untenanted]
    assert await matched(routes, "invoice.paid", "acme") == [acme]
    assert await matched(routes, "invoice.paid", "initech") == []


async def test_disabled_and_deleted_are_never_routed(
    routes: RoutingCache, db: asyncpg.Connection
) -> None:
    await insert_subscription(db, ["*"], status="disabled", tenant_id="acme")
    await insert_subscription(db, ["*"], deleted=True, tenant_id="acme")
    assert await matched(routes, "invoice.paid", "acme") == []


async def test_concurrent_events_share_one_query(
    routes: RoutingCache, db: asyncpg.Connection
) -> None:
    subs = {f"t{n}": await insert_subscription(db, ["a.*"], tenant_id=f"t{n}") for n in range(30)}
    await routes.sync()
    before = routes.reads
    found = await asyncio.gather(*(routes.match("a.b", tenant) for tenant in subs))
    assert routes.reads == before + 1
    assert [[r.id for r in f] for f in found] == [[sub] for sub in subs.values()]
    # Remembered now: the same events again read nothing.
    await asyncio.gather(*(routes.match("a.b", tenant) for tenant in subs))
    assert routes.reads == before + 1


async def test_memory_stays_within_its_bound(settings: Settings, db: asyncpg.Connection) -> None:
    subs = {f"t{n}": await insert_subscription(db, ["a.*"], tenant_id=f"t{n}") for n in range(40)}
    small = RoutingCache(settings.database_url.get_secret_value(), service="test", max_size=10)
    await small.start()
    try:
        for tenant, sub in subs.items():
            assert [r.id for r in await small.match("a.b", tenant)] == [sub]
            assert small._table.size <= 10
        assert len(small) == 5  # an answer of one route costs 2
    finally:
        await small.close()


async def test_a_remembered_answer_gives_way_to_each_kind_of_change(
    routes: RoutingCache, db: asyncpg.Connection
) -> None:
    first = await insert_subscription(db, ["a.*"], tenant_id="acme")
    assert await matched(routes, "a.b", "acme") == [first]
    assert routes.peek("a.b", "acme") is not None  # remembered

    second = await insert_subscription(db, ["a.b"], tenant_id="acme")  # a new one
    assert await matched(routes, "a.b", "acme") == sorted([first, second])

    await db.execute("UPDATE subscriptions SET tenant_id = 'globex' WHERE id = $1", first)
    assert await matched(routes, "a.b", "acme") == [second]  # moved away
    assert await matched(routes, "a.b", "globex") == [first]

    await db.execute("UPDATE subscriptions SET status = 'disabled' WHERE id = $1", second)
    assert await matched(routes, "a.b", "acme") == []
    await db.execute("UPDATE subscriptions SET status = 'enabled' WHERE id = $1", second)
    assert await matched(routes, "a.b", "acme") == [second]

    await db.execute("DELETE FROM subscriptions WHERE id = $1", second)  # gone, row and all
    assert await matched(routes, "a.b", "acme") == []

    await db.execute("UPDATE subscriptions SET parked_until = now() + interval '1 hour'")
    await routes.sync()
    [parked] = await routes.match("a.b", "globex")
    assert parked.parked_until is not None


async def test_the_sender_holds_a_bounded_few_and_reads_misses_together(
    settings: Settings, db: asyncpg.Connection
) -> None:
    ids = [await insert_subscription(db, ["*"], url=f"http://127.0.0.1:9/{n}") for n in range(20)]
    cache = SubscriptionCache(
        settings.database_url.get_secret_value(), SecretBox(None), service="test", max_size=5
    )
    await cache.start()
    try:
        found = await asyncio.gather(*(cache.get(sub_id) for sub_id in ids))
        assert [s.url if s else None for s in found] == [
            f"http://127.0.0.1:9/{n}" for n in range(20)
        ]
        assert cache.reads == 1
        assert len(cache) == 5
        assert await cache.get_many([*ids[:3], "sub_unknown"]) == {
            i: s for i, s in zip(ids[:3], found[:3], strict=True) if s
        }

        last = ids[-1]
        assert cache.peek(last) is not None
        await db.execute(
            "UPDATE subscriptions SET url = 'http://127.0.0.1:9/new' WHERE id = $1", last
        )
        await eventually(lambda: cache.peek(last) is None)
        changed = await cache.get(last)
        assert changed is not None and changed.url == "http://127.0.0.1:9/new"
    finally:
        await cache.close()


async def test_current_is_sync_and_match_in_one_round_trip(
    routes: RoutingCache, db: asyncpg.Connection
) -> None:
    subs = {f"t{n}": await insert_subscription(db, ["a.*"], tenant_id=f"t{n}") for n in range(30)}
    keys = [(tenant, "a.b") for tenant in subs]
    before = routes.reads
    found = await asyncio.gather(*(routes.current([key]) for key in keys))
    assert routes.reads == before + 1  # 30 events, all misses: one query
    assert [[r.id for r in f[k]] for f, k in zip(found, keys, strict=True)] == [
        [sub] for sub in subs.values()
    ]
    # All remembered now: one probe for all, and a change made just before is honoured.
    late = await insert_subscription(db, ["a.b"], tenant_id="t3")
    found = await asyncio.gather(*(routes.current([key]) for key in keys))
    assert sorted(r.id for r in found[3][("t3", "a.b")]) == sorted([subs["t3"], late])
    assert [r.id for r in found[4][("t4", "a.b")]] == [subs["t4"]]
