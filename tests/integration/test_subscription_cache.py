"""The subscription cache follows Postgres: NOTIFY within 1 s, a full reload on reconnect."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from pydantic import SecretStr

from shared.errors import ConfigurationError, StorageUnavailable
from shared.secretbox import SecretBox, new_key
from shared.settings import Settings
from shared.signing import generate_secret, secret_bytes
from shared.subscription_cache import SubscriptionCache
from tests.integration.fanout_support import eventually, insert_subscription
from tests.support import ADMIN_DATABASE_URL

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
    await cache.start()
    try:
        assert cache.ready()
        assert ids(cache.match("invoice.paid", None)) == {sub_id}
        assert cache.get(deleted) is None
    finally:
        await cache.close()
    assert not cache.ready()


async def test_insert_update_delete_are_seen_within_a_second(
    cache: SubscriptionCache, db: asyncpg.Connection
) -> None:
    sub_id = await insert_subscription(db, ["invoice.paid"])
    await eventually(lambda: cache.get(sub_id) is not None)
    assert ids(cache.match("invoice.paid", None)) == {sub_id}

    await db.execute("UPDATE subscriptions SET event_types = $2 WHERE id = $1", sub_id, ["order.*"])
    await eventually(lambda: ids(cache.match("order.shipped", None)) == {sub_id})
    assert cache.match("invoice.paid", None) == []

    await db.execute(
        "UPDATE subscriptions SET status = 'disabled', disabled_reason = 'manual' WHERE id = $1",
        sub_id,
    )
    await eventually(lambda: cache.match("order.shipped", None) == [])
    disabled = cache.get(sub_id)
    assert disabled is not None and not disabled.enabled

    await db.execute("UPDATE subscriptions SET deleted_at = now() WHERE id = $1", sub_id)
    await eventually(lambda: cache.get(sub_id) is None)

    other = await insert_subscription(db, ["*"])
    await eventually(lambda: cache.get(other) is not None)
    await db.execute("DELETE FROM subscriptions WHERE id = $1", other)
    await eventually(lambda: cache.get(other) is None)


async def test_rotated_secret_is_picked_up(
    cache: SubscriptionCache, db: asyncpg.Connection
) -> None:
    sub_id = await insert_subscription(db, ["invoice.paid"])
    await eventually(lambda: cache.get(sub_id) is not None)
    new_secret = generate_secret()
    await db.execute(
        "UPDATE subscriptions SET previous_secret = secret, secret = $2,"
        " previous_secret_expires_at = now() + interval '1 day' WHERE id = $1",
        sub_id,
        new_secret,
    )

    def rotated() -> bool:
        sub = cache.get(sub_id)
        return sub is not None and sub.keys[0] == secret_bytes(new_secret) and len(sub.keys) == 2

    await eventually(rotated)


async def test_a_burst_of_changes_ends_in_the_last_state(
    cache: SubscriptionCache, db: asyncpg.Connection
) -> None:
    sub_id = await insert_subscription(db, ["a.b"])
    for i in range(50):
        await db.execute(
            "UPDATE subscriptions SET event_types = $2 WHERE id = $1", sub_id, [f"t{i}.x"]
        )
    await eventually(lambda: ids(cache.match("t49.x", None)) == {sub_id})
    assert cache.match("t48.x", None) == []
    assert cache.match("a.b", None) == []


async def test_reconnects_and_sees_changes_made_while_down(
    cache: SubscriptionCache, db: asyncpg.Connection
) -> None:
    kept = await insert_subscription(db, ["invoice.*"])
    await eventually(lambda: cache.get(kept) is not None)
    # Refuse new connections meanwhile, so the cache cannot hear of the changes below.
    database = _quoted(await db.fetchval("SELECT current_database()"))
    admin = await asyncpg.connect(ADMIN_DATABASE_URL)
    try:
        await admin.execute(f"ALTER DATABASE {database} ALLOW_CONNECTIONS false")
        killed = await db.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        assert killed == 1
        await eventually(lambda: not cache.ready())
        added = await insert_subscription(db, ["invoice.paid"])
        await db.execute("UPDATE subscriptions SET deleted_at = now() WHERE id = $1", kept)
        await asyncio.sleep(0.3)
        assert cache.get(added) is None  # nobody could have told it yet
        # Fanout must not match against what may be stale: it is told to try later.
        with pytest.raises(StorageUnavailable):
            await cache.sync()
    finally:
        await admin.execute(f"ALTER DATABASE {database} ALLOW_CONNECTIONS true")
        await admin.close()

    await eventually(cache.ready, within_s=10.0)
    assert ids(cache.match("invoice.paid", None)) == {added}
    assert cache.get(kept) is None


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def test_encrypted_secrets_are_opened(settings: Settings, db: asyncpg.Connection) -> None:
    box = SecretBox(SecretStr(new_key()))
    secret = generate_secret()
    sub_id = await insert_subscription(db, ["invoice.paid"], secret=box.seal(secret))
    cache = SubscriptionCache(settings.database_url.get_secret_value(), box, service="test")
    await cache.start()
    try:
        sub = cache.get(sub_id)
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
