"""A portal token's writes check the tenant as part of the write, not before it.

Each test moves the tenant's subscription to another tenant in a transaction left open, so
the move holds the subscription's row; the portal's write is sent meanwhile, and the move
commits once that write is blocked behind it (or done). A check made before the write would
have seen the old tenant and let it through; a write that carries the tenant as its
condition re-reads the moved row and answers 404.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from shared.settings import Settings
from tests.support.ingest import Ingest, running_ingest
from tests.support.portal import World, make_world, portal_call

_WAITING = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND wait_event_type = 'Lock'
"""


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Ingest]:
    async with running_ingest(settings) as running:
        yield running


@pytest.fixture
async def world(api: Ingest) -> World:
    return await make_world(api)


@pytest.fixture
async def db(api: Ingest) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(api.settings.database_url.get_secret_value())
    try:
        yield conn
    finally:
        await conn.close()


async def _during_a_move(
    api: Ingest, world: World, db: asyncpg.Connection, method: str, path: str, body: Any
) -> tuple[int, Any]:
    """The portal's answer to a request sent while its subscription moves to globex."""
    mover = await asyncpg.connect(api.settings.database_url.get_secret_value())
    try:
        move = mover.transaction()
        await move.start()
        await mover.execute(
            "UPDATE subscriptions SET tenant_id = 'globex' WHERE id = $1", world.own.subscription
        )
        request = asyncio.create_task(portal_call(api, world, method, path, body))
        await _blocked_or_done(request, db)
        await move.commit()
        return await request
    finally:
        await mover.close()


async def _blocked_or_done(request: asyncio.Task[Any], db: asyncpg.Connection) -> None:
    """Wait until the request waits on a row lock, or has been answered without one."""
    while True:
        if request.done() or await db.fetchval(_WAITING) > 0:
            return
        await asyncio.sleep(0.01)


async def _subscription(db: asyncpg.Connection, world: World) -> asyncpg.Record:
    row = await db.fetchrow("SELECT * FROM subscriptions WHERE id = $1", world.own.subscription)
    assert row is not None
    return row


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("PATCH", "", {"description": "still mine?"}),
        ("PATCH", "", {"status": "disabled"}),
        ("DELETE", "", None),
        ("POST", "/secret/rotate", None),
    ],
)
async def test_a_subscription_moved_meanwhile_is_not_changed(
    api: Ingest, world: World, db: asyncpg.Connection, method: str, suffix: str, body: Any
) -> None:
    before = await _subscription(db, world)
    path = f"/v1/subscriptions/{world.own.subscription}{suffix}"
    status, problem = await _during_a_move(api, world, db, method, path, body)
    assert status == 404, problem
    after = await _subscription(db, world)
    assert after["tenant_id"] == "globex"
    unchanged = ("description", "status", "deleted_at", "secret", "previous_secret")
    assert [after[c] for c in unchanged] == [before[c] for c in unchanged]


async def test_a_delivery_of_a_subscription_moved_meanwhile_is_not_retried(
    api: Ingest, world: World, db: asyncpg.Connection
) -> None:
    path = f"/v1/deliveries/{world.own.delivery}/retry"
    status, problem = await _during_a_move(api, world, db, "POST", path, None)
    assert status == 404, problem
    state = await db.fetchval("SELECT status FROM deliveries WHERE id = $1", world.own.delivery)
    assert state == "failed"


async def test_a_subscription_moved_meanwhile_is_not_recovered(
    api: Ingest, world: World, db: asyncpg.Connection
) -> None:
    path = f"/v1/subscriptions/{world.own.subscription}/recover"
    body = {"since": "2000-01-01T00:00:00Z"}
    status, problem = await _during_a_move(api, world, db, "POST", path, body)
    assert status == 404, problem
    state = await db.fetchval("SELECT status FROM deliveries WHERE id = $1", world.own.delivery)
    assert state == "failed"


async def test_a_subscription_moved_meanwhile_gets_no_test_event(
    api: Ingest, world: World, db: asyncpg.Connection
) -> None:
    path = f"/v1/subscriptions/{world.own.subscription}/test"
    status, problem = await _during_a_move(api, world, db, "POST", path, None)
    assert status == 404, problem
    tests = await db.fetchval("SELECT count(*) FROM events WHERE type = 'hookline.test'")
    assert tests == 0
    sent = await db.fetchval(
        "SELECT count(*) FROM deliveries WHERE subscription_id = $1", world.own.subscription
    )
    assert sent == 1  # the world's own, failed one
