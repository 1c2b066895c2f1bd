"""The subscription caches follow Postgres: NOTIFY within 1 s, everything forgotten on reconnect.

The sender's `SubscriptionCache` (by id) and fanout's `RoutingCache` (by tenant and type)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from pydantic import SecretStr

from shared.errors import ConfigurationError, StorageUnavailable
from shared.routing_cache import RoutingCache
from shared.secretbox import SecretBox, new_key
from shared.settings import Settings
from shared.signing import generate_secret, secret_bytes
from shared.subscription_cache import SubscriptionCache
from tests.support import ADMIN_DATABASE_URL
from tests.support.fanout import (
    eventually,
    eventually_async,
    insert_subscription,
)

FRESH_WITHIN_S = 1.0


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    yield conn
    await conn.close()


@pytest.fixture
async def cache(settings: Settings) -> AsyncIterator[SubscriptionCache]:
    value = SubscriptionCache(
        settings.database_url.get_secret_value(), SecretBox(None), service="test"
    )
    await value.start()
    yield value
    await value.close()


@pytest.fixture
async def routes(settings: Settings) -> AsyncIterator[RoutingCache]:
    value = RoutingCache(settings.database_url.get_secret_value(), service="test")
    await value.start()
    yield value
    await value.close()


async def matched(routes: RoutingCache, event_type: str, tenant: str | None) -> set[str]:
    """What fanout would match for an event published now (after `sync`, as fanout does)."""
    await routes.sync()
    return ids(await routes.match(event_type, tenant))


def ids(subs: list[object]) -> set[str]:
    return {s.id for s in subs}  # type: ignore[attr-defined]


async def test_start_loads_existing_subscriptions(settings: Settings) -> None:
    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    try:
        sub_id = await insert_subscription(conn, ["invoice.*"])
        deleted = await insert_subscription(conn, ["invoice.*"], deleted=True)
    finally:
        await conn.close()
    cache = SubscriptionCache(
        settings.database_url.get_secret_value(), SecretBox(None), service="test"
    )
    routes = RoutingCache(settings.database_url.get_secret_value(), service="test")
    await cache.start()
    await routes.start()
    try:
        assert cache.ready() and routes.ready()
        assert await matched(routes, "invoice.paid", None) == {sub_id}
        assert await cache.get(deleted) is None
    finally:
        await cache.close()
        await routes.close()
    assert not cache.ready() and not routes.ready()


async def test_insert_update_delete_are_seen_within_a_second(
    cache: SubscriptionCache, routes: RoutingCache, db: asyncpg.Connection
) -> None:
    sub_id = await insert_subscription(db, ["invoice.paid"])
    await eventually_async(lambda: _known(cache, sub_id))
    assert await matched(routes, "invoice.paid", None) == {sub_id}

    await db.execute("UPDATE subscriptions SET event_types = $2 WHERE id = $1", sub_id, ["order.*"])
    await eventually_async(lambda: _matches(routes, "order.shipped", {sub_id}))
    assert await matched(routes, "invoice.paid", None) == set()

    await db.execute(
        "UPDATE subscriptions SET status = 'disabled', disabled_reason = 'manual' WHERE id = $1",
        sub_id,
    )
    await eventually_async(lambda: _matches(routes, "order.shipped", set()))
    await eventually(lambda: cache.peek(sub_id) is None)  # the NOTIFY dropped the old row
    disabled = await cache.get(sub_id)
    assert disabled is not None and not disabled.enabled

    await db.execute("UPDATE subscriptions SET deleted_at = now() WHERE id = $1", sub_id)
    await eventually_async(lambda: _unknown(cache, sub_id))

    other = await insert_subscription(db, ["*"])
    await eventually_async(lambda: _known(cache, other))
    await db.execute("DELETE FROM subscriptions WHERE id = $1", other)
    await eventually_async(lambda: _unknown(cache, other))


async def _known(cache: SubscriptionCache, sub_id: str) -> bool:
    return await cache.get(sub_id) is not None


async def _unknown(cache: SubscriptionCache, sub_id: str) -> bool:
    return await cache.get(sub_id) is None


async def _matches(routes: RoutingCache, event_type: str, expected: set[str]) -> bool:
    return await matched(routes, event_type, None) == expected


async def test_rotated_secret_is_picked_up(
    cache: SubscriptionCache, db: asyncpg.Connection
) -> None:
    sub_id = await insert_subscription(db, ["invoice.paid"])
    await eventually_async(lambda: _known(cache, sub_id))
    new_secret = generate_secret()
    await db.execute(
        "UPDATE subscriptions SET previous_secret = secret, secret = $2,"
        " previous_secret_expires_at = now() + interval '1 day' WHERE id = $1",
        sub_id,
        new_secret,
    )

    async def rotated() -> bool:
        sub = await cache.get(sub_id)
        return sub is not None and sub.keys[0] == secret_bytes(new_secret) and len(sub.keys) == 2

    await eventually_async(rotated)


async def test_a_burst_of_changes_ends_in_the_last_state(
    routes: RoutingCache, db: asyncpg.Connection
) -> None:
    sub_id = await insert_subscription(db, ["a.b"])
    assert await matched(routes, "a.b", None) == {sub_id}  # remembered now
    for i in range(50):
        await db.execute(
            "UPDATE subscriptions SET event_types = $2 WHERE id = $1", sub_id, [f"t{i}.x"]
        )
        if i % 10 == 0:
            assert await matched(routes, f"t{i}.x", None) == {sub_id}
    await eventually_async(lambda: _matches(routes, "t49.x", {sub_id}))
    assert await matched(routes, "t48.x", None) == set()
    assert await matched(routes, "t40.x", None) == set()
    assert await matched(routes, "a.b", None) == set()


async def test_reconnects_and_sees_changes_made_while_down(
    cache: SubscriptionCache, routes: RoutingCache, db: asyncpg.Connection
) -> None:
    kept = await insert_subscription(db, ["invoice.*"])
    await eventually_async(lambda: _known(cache, kept))
    assert await matched(routes, "invoice.paid", None) == {kept}  # remembered now
    # Refuse new connections meanwhile, so the cache cannot hear of the changes below.
    database = _quoted(await db.fetchval("SELECT current_database()"))
    admin = await asyncpg.connect(ADMIN_DATABASE_URL)
    try:
        await admin.execute(f"ALTER DATABASE {database} ALLOW_CONNECTIONS false")
        killed = await db.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        assert killed == 2
        await eventually(lambda: not cache.ready() and not routes.ready())
        added = await insert_subscription(db, ["invoice.paid"])
        await db.execute("UPDATE subscriptions SET deleted_at = now() WHERE id = $1", kept)
        await asyncio.sleep(0.3)
        assert cache.peek(added) is None  # nobody could have told it yet
        # Neither may answer from what may be stale: they are told to try later.
        with pytest.raises(StorageUnavailable):
            await routes.sync()
        with pytest.raises(StorageUnavailable):
            await routes.current([(None, "invoice.paid")])  # what fanout calls
        with pytest.raises(StorageUnavailable):
            await cache.get(added)
    finally:
        await admin.execute(f"ALTER DATABASE {database} ALLOW_CONNECTIONS true")
        await admin.close()

    await eventually(lambda: cache.ready() and routes.ready(), within_s=10.0)
    assert await matched(routes, "invoice.paid", None) == {added}
    key = (None, "invoice.paid")
    assert ids(list((await routes.current([key]))[key])) == {added}
    assert await cache.get(kept) is None


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def test_encrypted_secrets_are_opened(settings: Settings, db: asyncpg.Connection) -> None:
    box = SecretBox(SecretStr(new_key()))
    secret = generate_secret()
    sub_id = await insert_subscription(db, ["invoice.paid"], secret=box.seal(secret))
    cache = SubscriptionCache(settings.database_url.get_secret_value(), box, service="test")
    await cache.start()
    try:
        sub = await cache.get(sub_id)
        assert sub is not None and sub.keys == (secret_bytes(secret),)
    finally:
        await cache.close()


async def test_start_fails_clearly_without_the_secret_key(
    settings: Settings, db: asyncpg.Connection
) -> None:
    sealed = SecretBox(SecretStr(new_key())).seal(generate_secret())
    await insert_subscription(db, ["invoice.paid"], secret=sealed)
    cache = SubscriptionCache(
        settings.database_url.get_secret_value(), SecretBox(None), service="t"
    )
    with pytest.raises(ConfigurationError, match="HOOKLINE_SECRET_KEY"):
        await cache.start()
    assert not cache.ready()


async def test_start_fails_clearly_without_postgres() -> None:
    cache = SubscriptionCache(
        "postgresql://postgres@127.0.0.1:1/hookline", SecretBox(None), service="t"
    )
    with pytest.raises(StorageUnavailable):
        await cache.start()
