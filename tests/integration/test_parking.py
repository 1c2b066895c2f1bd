"""Parking a stuck target (issue 6): the sender parks a hanging subscription, fanout then puts
its new deliveries straight into a retry queue, and a recovered target still gets them all."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from aio_pika.abc import AbstractRobustConnection

from shared.settings import Settings
from tests.integration.test_fanout import Fanout, _start, connection  # noqa: F401
from tests.support.fanout import insert_subscription as insert_matching
from tests.support.sender import (
    Answer,
    Receiver,
    database,
    insert_delivery,
    insert_subscription,
    publish,
    sender_running,
    variant,
    wait_for_status,
)

LONG_S = 30.0


@pytest.fixture
async def fanout_long_retry(
    settings: Settings,
    connection: AbstractRobustConnection,  # noqa: F811
) -> AsyncIterator[Fanout]:
    """Fanout whose schedule has a 30 s queue: a parked delivery stays visibly in it."""
    async with variant(settings, retry_delays=(0.2, LONG_S)) as changed:
        async for value in _start(changed, connection):
            yield value


async def test_fanout_parks_a_parked_subscriptions_deliveries(fanout_long_retry: Fanout) -> None:
    f = fanout_long_retry
    parked = await insert_matching(f.db, ["order.*"])
    healthy = await insert_matching(f.db, ["order.*"])
    await f.db.execute(
        "UPDATE subscriptions SET parked_until = $2 WHERE id = $1",
        parked,
        datetime.now(UTC) + timedelta(minutes=10),
    )
    event = await f.event("order.created")
    await f.publish(event)

    # The healthy one's delivery goes to the sender's work queue, the parked one's does not.
    [delivery] = await f.deliveries(1)
    assert delivery.subscription_id == healthy
    long_queue = f.topology.retry_queue(LONG_S).name
    await _until(lambda: _has_messages(f, long_queue), within_s=10)
    assert await f.leftover_deliveries() == []
    [waiting] = await f.take(long_queue, 1)
    assert waiting.app_id == parked
    assert waiting.correlation_id == event.event_id


async def _until(check: Callable[[], Awaitable[bool]], within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"not true within {within_s}s")
        await asyncio.sleep(0.05)


async def _has_messages(f: Fanout, queue_name: str) -> bool:
    return await f.queue_depth(queue_name) > 0


async def _is_parked(conn: asyncpg.Connection, sub_id: str) -> bool:
    value = await conn.fetchval("SELECT parked_until FROM subscriptions WHERE id = $1", sub_id)
    return value is not None


async def _is_unparked(conn: asyncpg.Connection, sub_id: str) -> bool:
    value = await conn.fetchval("SELECT parked_until FROM subscriptions WHERE id = $1", sub_id)
    return value is None


async def test_a_hanging_target_is_parked_and_gets_everything_once_it_recovers(
    settings: Settings,
) -> None:
    release = asyncio.Event()
    receiver = Receiver(Answer(200, hold=release))
    async with (
        # Attempts enough that timing out while it hangs never exhausts a delivery.
        variant(
            settings,
            sender_per_target_concurrency=1,
            delivery_timeout=0.5,
            retry_delays=(0.2,) + (0.4,) * 12,
        ) as capped,
        receiver.running(),
        database(capped) as conn,
        sender_running(capped),
    ):
        sub_id, _ = await insert_subscription(conn, receiver.url())
        msgs = [await insert_delivery(conn, sub_id) for _ in range(20)]
        await publish(capped, *msgs)

        # Stuck for half a timeout while its backlog keeps coming back: the sender parks it.
        await _until(lambda: _is_parked(conn, sub_id), within_s=20)

        release.set()
        for msg in msgs:
            await wait_for_status(conn, msg.delivery_id, "succeeded", timeout_s=60)
        # A quick answer clears the park: fanout sends its deliveries normally again.
        await _until(lambda: _is_unparked(conn, sub_id), within_s=10)

    assert {r.headers["webhook-id"] for r in receiver.requests} == {m.event_id for m in msgs}


async def test_a_briefly_parked_subscriptions_delivery_comes_back_after_a_short_delay(
    fanout_long_retry: Fanout,
) -> None:
    f = fanout_long_retry
    parked = await insert_matching(f.db, ["order.*"])
    # Parked for 10 s, less than the 30 s queue: rounding that up would hold the delivery
    # three times as long as the park; rounded down it waits the 0.2 s queue.
    await f.db.execute(
        "UPDATE subscriptions SET parked_until = $2 WHERE id = $1",
        parked,
        datetime.now(UTC) + timedelta(seconds=10),
    )
    event = await f.event("order.created")
    await f.publish(event)

    [delivery] = await f.deliveries(1)
    assert (delivery.subscription_id, delivery.event_id) == (parked, event.event_id)
    assert await f.queue_depth(f.topology.retry_queue(LONG_S).name) == 0
