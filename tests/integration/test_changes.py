"""The one follower of database changes (`shared.changes`), on a real Postgres: each channel's
notifications reach its own cache, in order; after its connection is killed every cache is
told to start over, and notifications flow again."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from shared.changes import ChangeFollower, Channel
from shared.settings import Settings
from tests.support.fanout import eventually, eventually_async

WITHIN_S = 10.0


class Recorder:
    """What one cache would have been told."""

    def __init__(self) -> None:
        self.notified: list[str] = []
        self.resets = 0

    def notify(self, payload: str) -> None:
        self.notified.append(payload)

    def reset(self) -> None:
        self.resets += 1


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    yield conn
    await conn.close()


async def test_both_caches_hear_their_channel_and_start_over_after_a_lost_connection(
    settings: Settings, db: asyncpg.Connection
) -> None:
    routes, types = Recorder(), Recorder()
    follower = ChangeFollower(
        settings.database_url.get_secret_value(),
        service="test",
        channels=[
            Channel("hookline_subscriptions", routes.notify, routes.reset),
            Channel("hookline_event_types", types.notify, types.reset),
        ],
    )
    await follower.start()
    try:
        assert (routes.resets, types.resets) == (1, 1)
        assert follower.ready()
        # Through the real triggers of migration 0001, not a hand-made NOTIFY.
        await db.execute("INSERT INTO event_types (name, description) VALUES ('order.paid', '')")
        await db.execute(
            "INSERT INTO subscriptions (id, url, event_types, secret)"
            " VALUES ('sub_a', 'https://example.com/a', ARRAY['order.paid'], 'x')"
        )
        await db.execute(
            "UPDATE subscriptions SET url = 'https://example.com/b' WHERE id = 'sub_a'"
        )
        # sync() returns only after every earlier commit was notified.
        await follower.sync()
        assert routes.notified[-2:] == ["sub_a", "sub_a"]
        assert types.notified == ["order.paid"]

        backend = await follower.run(lambda conn: conn.fetchval("SELECT pg_backend_pid()"))
        await db.execute("SELECT pg_terminate_backend($1)", backend)
        await eventually(lambda: routes.resets == 2 and types.resets == 2, WITHIN_S)
        await eventually(follower.ready, WITHIN_S)

        async def reconnected() -> bool:
            pid = await follower.run(lambda conn: conn.fetchval("SELECT pg_backend_pid()"))
            return bool(pid != backend)

        await eventually_async(reconnected, WITHIN_S)
        # The caches' reads run with one generic plan, on the new connection too.
        mode = await follower.run(lambda conn: conn.fetchval("SHOW plan_cache_mode"))
        assert mode == "force_generic_plan"
        await db.execute("UPDATE event_types SET description = 'paid' WHERE name = 'order.paid'")
        await follower.sync()
        assert types.notified == ["order.paid", "order.paid"]
    finally:
        await follower.close()
    assert not follower.ready()
