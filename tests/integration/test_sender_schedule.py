"""The sender with other settings: Retry-After within a longer schedule, a changed schedule,
the SSRF guard at send time, and the per-target cap (noisy neighbour)."""

from __future__ import annotations

import asyncio

from shared.metrics import DELIVERIES_DEFERRED
from shared.settings import Settings
from shared.topology import Topology
from tests.support.sender import (
    Answer,
    Receiver,
    attempts_of,
    database,
    insert_delivery,
    insert_subscription,
    publish,
    queue_messages,
    sender_running,
    variant,
    wait_for_status,
)

TOLERANCE_S = 0.05


async def test_retry_after_is_not_retried_sooner_than_asked(settings: Settings) -> None:
    receiver = Receiver(Answer(429, headers={"Retry-After": "1"}), Answer(200))
    async with (
        variant(settings, retry_delays=(0.2, 1.0, 2.0)) as changed,
        receiver.running(),
        database(changed) as conn,
        sender_running(changed),
    ):
        sub_id, _ = await insert_subscription(conn, receiver.url())
        msg = await insert_delivery(conn, sub_id)
        await publish(changed, msg)
        await wait_for_status(conn, msg.delivery_id, "succeeded")
        first, second = await receiver.wait_for(2)

    assert second.at - first.at >= 1.0 - TOLERANCE_S


async def test_a_changed_schedule_starts_cleanly(settings: Settings) -> None:
    receiver = Receiver(Answer(500), Answer(200))
    async with variant(settings, retry_delays=(0.3, 0.6)) as old:
        async with sender_running(old):
            pass
        # The next deployment has another schedule: its queues are new ones, beside the old.
        async with receiver.running(), database(settings) as conn, sender_running(settings):
            sub_id, _ = await insert_subscription(conn, receiver.url())
            msg = await insert_delivery(conn, sub_id)
            await publish(settings, msg)
            row = await wait_for_status(conn, msg.delivery_id, "succeeded")

    assert row["attempts"] == 2


async def test_a_refused_target_fails_at_once(settings: Settings) -> None:
    receiver = Receiver(Answer(200))
    async with (
        variant(settings, allow_private_targets=False) as guarded,
        receiver.running(),
        database(guarded) as conn,
        sender_running(guarded),
    ):
        sub_id, _ = await insert_subscription(conn, receiver.url())
        msg = await insert_delivery(conn, sub_id)
        await publish(guarded, msg)
        row = await wait_for_status(conn, msg.delivery_id, "failed")
        attempts = await attempts_of(conn, msg.delivery_id)
    dead = await queue_messages(settings, Topology(settings.namespace, ()).dead_queue.name)

    assert receiver.requests == []
    assert row["attempts"] == 1
    assert [(a["outcome"], a["error_kind"]) for a in attempts] == [("failed", "target_refused")]
    assert "loopback" in attempts[0]["error"]
    assert [d["x-hookline-delivery-id"] for d in dead] == [msg.delivery_id]


async def test_a_hanging_target_holds_only_its_share(settings: Settings) -> None:
    release = asyncio.Event()
    slow = Receiver(Answer(200, hold=release))
    fast = Receiver(Answer(200))
    deferred_before = DELIVERIES_DEFERRED._value.get()
    async with (
        variant(settings, sender_per_target_concurrency=1, delivery_timeout=30.0) as capped,
        slow.running(),
        fast.running(),
        database(capped) as conn,
        sender_running(capped),
    ):
        slow_id, _ = await insert_subscription(conn, slow.url())
        fast_id, _ = await insert_subscription(conn, fast.url())
        slow_msgs = [await insert_delivery(conn, slow_id) for _ in range(3)]
        fast_msgs = [await insert_delivery(conn, fast_id) for _ in range(5)]
        await publish(capped, *slow_msgs, *fast_msgs)

        # Every fast delivery arrives while the slow target still hangs on its first one.
        await fast.wait_for(5)
        assert len(slow.requests) == 1
        # Its others wait for its slot a moment (WATCH_S), then, the target stuck all
        # that while, are deferred rather than held.
        for _ in range(200):
            if DELIVERIES_DEFERRED._value.get() > deferred_before:
                break
            await asyncio.sleep(0.05)
        assert DELIVERIES_DEFERRED._value.get() > deferred_before
        assert len(slow.requests) == 1
        release.set()
        for msg in slow_msgs:
            await wait_for_status(conn, msg.delivery_id, "succeeded")
        await asyncio.sleep(0.5)

    assert sorted(r.headers["webhook-id"] for r in slow.requests) == sorted(
        m.event_id for m in slow_msgs
    )
    assert len(fast.requests) == 5
    assert DELIVERIES_DEFERRED._value.get() > deferred_before
