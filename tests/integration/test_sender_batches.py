"""Batch messages (one per event, fanout's first attempts) in the real sender: every
subscription gets its webhook once and on its own terms, whatever the others do."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import aio_pika
import asyncpg
from pydantic import SecretStr
from standardwebhooks import Webhook

from services.fanout.publisher import DeliveryPublisher
from services.sender.app import run as run_sender
from shared.ids import delivery_id, new_id
from shared.metrics import REGISTRY
from shared.models import webhook_body
from shared.runtime import serve
from shared.secretbox import new_key
from shared.settings import Settings
from shared.topology import Topology
from shared.wire.messages import H_DELIVERY_ID, H_ERROR, EventMessage
from tests.support.sender import (
    AMQP_URL,
    Answer,
    Receiver,
    attempts_of,
    database,
    insert_delivery,
    insert_subscription,
    publish,
    queue_depths,
    queue_messages,
    sender_running,
    variant,
    wait_for_status,
)


async def _event_for(conn: asyncpg.Connection, subscription_ids: list[str]) -> EventMessage:
    """An event stored with a pending delivery to each subscription (as fanout leaves it)."""
    event_id = new_id("evt")
    created = datetime.now(UTC)
    await conn.execute(
        "INSERT INTO events (id, type, data, source, created_at)"
        " VALUES ($1, 'invoice.paid', '{\"n\": 1}', 'amqp', $2)",
        event_id,
        created,
    )
    await conn.executemany(
        "INSERT INTO deliveries (id, event_id, subscription_id) VALUES ($1, $2, $3)",
        [(delivery_id(event_id, s), event_id, s) for s in subscription_ids],
    )
    body = webhook_body("invoice.paid", created, {"n": 1})
    return EventMessage(event_id, "invoice.paid", None, body, accepted_at=time.time())


async def _publish_batch(
    settings: Settings, event: EventMessage, subscription_ids: list[str]
) -> None:
    """Publish the event's deliveries exactly as fanout does: one batch message."""
    await publish(settings)  # declares the topology
    topology = Topology(settings.namespace, settings.retry_delays)
    connection = await aio_pika.connect_robust(AMQP_URL)
    try:
        channel = await connection.channel(publisher_confirms=True)
        publisher = DeliveryPublisher(channel, topology.deliveries_exchange.name)
        rows = [(delivery_id(event.event_id, s), event.event_id, s) for s in subscription_ids]
        await publisher.publish(event, rows)
    finally:
        await connection.close()


async def test_each_subscription_of_a_batch_gets_its_webhook_once_signed(
    settings: Settings,
) -> None:
    receiver = Receiver(Answer(200))
    async with receiver.running(), database(settings) as conn:
        subs = [await insert_subscription(conn, receiver.url(f"/s{i}")) for i in range(4)]
        ids = [sub_id for sub_id, _ in subs]
        event = await _event_for(conn, ids)
        async with sender_running(settings):
            await _publish_batch(settings, event, ids)
            for sub_id in ids:
                await wait_for_status(conn, delivery_id(event.event_id, sub_id), "succeeded")
            await asyncio.sleep(0.5)  # room for a duplicate to show
            depths = await queue_depths(settings)

    assert sorted(r.path for r in receiver.requests) == [f"/s{i}" for i in range(4)]
    for request in receiver.requests:
        index = int(request.path.removeprefix("/s"))
        Webhook(subs[index][1]).verify(request.body, request.headers)
        assert request.headers["webhook-id"] == event.event_id
        assert request.body == event.body
    assert set(depths.values()) == {0}


async def test_a_failing_subscription_of_a_batch_is_retried_alone(settings: Settings) -> None:
    flaky = Receiver(Answer(500), Answer(200))
    healthy = Receiver(Answer(200))
    async with flaky.running(), healthy.running(), database(settings) as conn:
        flaky_sub, flaky_secret = await insert_subscription(conn, flaky.url())
        healthy_subs = [(await insert_subscription(conn, healthy.url()))[0] for _ in range(2)]
        event = await _event_for(conn, [flaky_sub, *healthy_subs])
        async with sender_running(settings):
            await _publish_batch(settings, event, [flaky_sub, *healthy_subs])
            # The first retry waits the schedule's first delay, then succeeds.
            flaky_id = delivery_id(event.event_id, flaky_sub)
            await wait_for_status(conn, flaky_id, "succeeded", timeout_s=30.0)
            attempts = await attempts_of(conn, flaky_id)
            for sub_id in healthy_subs:
                row = await wait_for_status(conn, delivery_id(event.event_id, sub_id), "succeeded")
                assert row["attempts"] == 1

    assert [(a["attempt"], a["status_code"]) for a in attempts] == [(1, 500), (2, 200)]
    assert len(flaky.requests) == 2
    assert len(healthy.requests) == 2  # one each, not sent again with the retry
    # The retry is the same webhook: same id, same body, signed anew.
    for request in (*flaky.requests, *healthy.requests):
        assert request.headers["webhook-id"] == event.event_id
        assert request.body == event.body
    Webhook(flaky_secret).verify(flaky.requests[1].body, flaky.requests[1].headers)


async def test_a_hanging_subscription_of_a_batch_does_not_hold_the_others(
    settings: Settings,
) -> None:
    release = asyncio.Event()
    hanging = Receiver(Answer(200, hold=release))
    healthy = Receiver(Answer(200))
    async with hanging.running(), healthy.running(), database(settings) as conn:
        stuck_sub, _ = await insert_subscription(conn, hanging.url())
        healthy_subs = [(await insert_subscription(conn, healthy.url()))[0] for _ in range(3)]
        event = await _event_for(conn, [stuck_sub, *healthy_subs])
        async with sender_running(settings):
            await _publish_batch(settings, event, [stuck_sub, *healthy_subs])
            await hanging.wait_for(1)
            # The other three are delivered and recorded while the first still hangs.
            for sub_id in healthy_subs:
                await wait_for_status(conn, delivery_id(event.event_id, sub_id), "succeeded")
            still = await conn.fetchval(
                "SELECT status FROM deliveries WHERE id = $1",
                delivery_id(event.event_id, stuck_sub),
            )
            release.set()
            await wait_for_status(conn, delivery_id(event.event_id, stuck_sub), "succeeded")

    assert still == "pending"
    assert len(healthy.requests) == 3
    assert len(hanging.requests) == 1


async def test_a_delivery_of_a_batch_that_cannot_be_handled_is_split_off_and_dead_lettered(
    settings: Settings,
) -> None:
    topology = Topology(settings.namespace, settings.retry_delays)
    receiver = Receiver(Answer(200))
    async with (
        variant(settings, secret_key=SecretStr(new_key())) as keyed,
        receiver.running(),
        database(keyed) as conn,
        sender_running(keyed),
    ):
        # A secret no key here opens: handling that delivery fails every time.
        broken, _ = await insert_subscription(conn, receiver.url("/broken"), secret="enc:v1:x")
        fine = [(await insert_subscription(conn, receiver.url("/fine")))[0] for _ in range(2)]
        event = await _event_for(conn, [broken, *fine])
        await _publish_batch(keyed, event, [broken, *fine])
        broken_id = delivery_id(event.event_id, broken)
        await wait_for_status(conn, broken_id, "failed", timeout_s=60.0)
        for sub_id in fine:
            await wait_for_status(conn, delivery_id(event.event_id, sub_id), "succeeded")
        await asyncio.sleep(0.5)
        dead = await queue_messages(keyed, topology.dead_queue.name)
        left = await queue_depths(keyed)

    # The two healthy ones were sent once, not again with each try of the broken one.
    assert [r.path for r in receiver.requests] == ["/fine", "/fine"]
    assert [h[H_DELIVERY_ID] for h in dead] == [broken_id]
    assert "ConfigurationError" in dead[0][H_ERROR]
    assert set(left.values()) == {0}


async def test_a_redelivered_batch_skips_the_deliveries_already_handled(
    settings: Settings,
) -> None:
    receiver = Receiver(Answer(200))
    topology = Topology(settings.namespace, settings.retry_delays)
    async with receiver.running(), database(settings) as conn:
        done, _ = await insert_subscription(conn, receiver.url("/done"))
        retrying, _ = await insert_subscription(conn, receiver.url("/retrying"))
        deferred, _ = await insert_subscription(conn, receiver.url("/deferred"))
        todo, _ = await insert_subscription(conn, receiver.url("/todo"))
        everyone = [done, retrying, deferred, todo]
        event = await _event_for(conn, everyone)
        # What a sender that died before acking the batch left behind: one delivery
        # succeeded, one made its first attempt (its retry waits in a retry queue)...
        await conn.execute(
            "UPDATE deliveries SET status = 'succeeded', attempts = 1 WHERE id = $1",
            delivery_id(event.event_id, done),
        )
        await conn.execute(
            "UPDATE deliveries SET attempts = 1 WHERE id = $1",
            delivery_id(event.event_id, retrying),
        )
        # and one was deferred: its copy waits in a retry queue, marked on its row.
        await conn.execute(
            "UPDATE deliveries SET next_attempt_at = now() + interval '5 minutes' WHERE id = $1",
            delivery_id(event.event_id, deferred),
        )
        await _publish_batch(settings, event, everyone)
        # Handed out and returned unacked, as when a sender's channel is lost.
        connection = await aio_pika.connect(AMQP_URL)
        try:
            channel = await connection.channel()
            queue = await channel.get_queue(topology.deliveries_queue.name)
            message = await queue.get(no_ack=False, timeout=5)
            await message.nack(requeue=True)
        finally:
            await connection.close()

        async with sender_running(settings):
            await wait_for_status(conn, delivery_id(event.event_id, todo), "succeeded")
            await asyncio.sleep(0.5)
            depths = await queue_depths(settings)
        retrying_row = await conn.fetchrow(
            "SELECT status, attempts FROM deliveries WHERE id = $1",
            delivery_id(event.event_id, retrying),
        )

    assert [r.path for r in receiver.requests] == ["/todo"]
    assert (retrying_row["status"], retrying_row["attempts"]) == ("pending", 1)
    assert set(depths.values()) == {0}


async def test_a_delivery_of_a_batch_deferred_for_its_busy_target_is_marked_on_its_row(
    settings: Settings,
) -> None:
    release = asyncio.Event()
    busy = Receiver(Answer(200, hold=release))
    healthy = Receiver(Answer(200))
    async with (
        variant(settings, sender_per_target_concurrency=1) as one_slot,
        busy.running(),
        healthy.running(),
        database(one_slot) as conn,
        sender_running(one_slot),
    ):
        busy_sub, _ = await insert_subscription(conn, busy.url())
        healthy_sub, _ = await insert_subscription(conn, healthy.url())
        first = await _event_for(conn, [busy_sub, healthy_sub])
        await _publish_batch(one_slot, first, [busy_sub, healthy_sub])
        await busy.wait_for(1)
        second = await _event_for(conn, [busy_sub, healthy_sub])
        await _publish_batch(one_slot, second, [busy_sub, healthy_sub])
        # The second event's delivery to the busy target found its one slot taken.
        await wait_for_status(conn, delivery_id(second.event_id, healthy_sub), "succeeded")
        deferred = delivery_id(second.event_id, busy_sub)
        for _ in range(200):
            row = await conn.fetchrow("SELECT * FROM deliveries WHERE id = $1", deferred)
            if row["next_attempt_at"] is not None:
                break
            await asyncio.sleep(0.05)
        release.set()
        # It comes back from its retry queue and is delivered.
        await wait_for_status(conn, deferred, "succeeded", timeout_s=30.0)

    assert (row["status"], row["attempts"]) == ("pending", 0)
    assert row["next_attempt_at"] is not None
    assert [r.headers["webhook-id"] for r in busy.requests] == [first.event_id, second.event_id]


async def test_batches_larger_than_the_in_hand_budget_are_all_delivered(
    settings: Settings,
) -> None:
    receiver = Receiver(Answer(200))
    async with (
        variant(settings, sender_max_in_hand=3) as small,
        receiver.running(),
        database(small) as conn,
        sender_running(small),
    ):
        subs = [(await insert_subscription(conn, receiver.url(f"/s{i}")))[0] for i in range(5)]
        big = await _event_for(conn, subs)
        pair = await _event_for(conn, subs[:2])
        await _publish_batch(small, big, subs)
        await _publish_batch(small, pair, subs[:2])
        for event, targets in ((big, subs), (pair, subs[:2])):
            for sub_id in targets:
                await wait_for_status(conn, delivery_id(event.event_id, sub_id), "succeeded")
        await asyncio.sleep(0.3)

    ids = sorted(r.headers["webhook-id"] for r in receiver.requests)
    assert ids == sorted([big.event_id] * 5 + [pair.event_id] * 2)


async def test_on_sigterm_messages_still_waiting_for_room_are_left_for_the_next_sender(
    settings: Settings,
) -> None:
    release = asyncio.Event()
    receiver = Receiver(Answer(200, hold=release))
    small = settings.model_copy(update={"sender_max_in_hand": 1, "shutdown_grace": 5.0})
    async with receiver.running(), database(small) as conn:
        sub_id, _ = await insert_subscription(conn, receiver.url())
        messages = [await insert_delivery(conn, sub_id) for _ in range(3)]
        stop = asyncio.Event()
        service = asyncio.create_task(serve(small, "sender", [("sender", run_sender)], stop=stop))
        await publish(small, *messages)
        await receiver.wait_for(1)  # the first holds the only unit; two wait for room
        stop.set()
        await asyncio.sleep(0.2)
        release.set()  # the first finishes within the grace and frees its unit
        assert await asyncio.wait_for(service, 30) == 0
        await asyncio.sleep(0.5)
        depths = await queue_depths(small)
        first = await conn.fetchval(
            "SELECT status FROM deliveries WHERE id = $1", messages[0].delivery_id
        )

    # The two that never started were not started during the shutdown: they wait in the
    # queue, untouched, for the next sender.
    assert len(receiver.requests) == 1
    assert first == "succeeded"
    assert depths[Topology(small.namespace, small.retry_delays).deliveries_queue.name] == 2


async def test_no_more_deliveries_in_hand_than_the_budget(settings: Settings) -> None:
    release = asyncio.Event()
    receiver = Receiver(Answer(200, hold=release))
    async with (
        variant(settings, sender_max_in_hand=2) as small,
        receiver.running(),
        database(small) as conn,
        sender_running(small),
    ):
        subs = [(await insert_subscription(conn, receiver.url(f"/s{i}")))[0] for i in range(5)]
        messages = [await insert_delivery(conn, sub) for sub in subs]
        await publish(small, *messages)
        await receiver.wait_for(2)
        await asyncio.sleep(0.5)  # room for a third to arrive if it could
        held = len(receiver.requests)
        release.set()
        for msg in messages:
            await wait_for_status(conn, msg.delivery_id, "succeeded")

    assert held == 2
    assert len(receiver.requests) == 5


async def test_deliveries_waiting_for_a_global_slot_do_not_count_against_their_target(
    settings: Settings,
) -> None:
    # One global slot, one per target: while a slow attempt holds the global slot, a
    # healthy target's deliveries queue for it; none of them is refused by its own target.
    release = asyncio.Event()
    slow = Receiver(Answer(200, hold=release))
    healthy = Receiver(Answer(200))
    deferred = REGISTRY.get_sample_value("hookline_deliveries_deferred_total") or 0.0
    async with (
        variant(settings, sender_concurrency=1, sender_per_target_concurrency=1) as tight,
        slow.running(),
        healthy.running(),
        database(tight) as conn,
        sender_running(tight),
    ):
        slow_sub, _ = await insert_subscription(conn, slow.url())
        healthy_sub, _ = await insert_subscription(conn, healthy.url())
        first = await insert_delivery(conn, slow_sub)
        await publish(tight, first)
        await slow.wait_for(1)
        waiting = [await insert_delivery(conn, healthy_sub) for _ in range(3)]
        await publish(tight, *waiting)
        await asyncio.sleep(0.5)
        release.set()
        for msg in (first, *waiting):
            await wait_for_status(conn, msg.delivery_id, "succeeded")

    assert (REGISTRY.get_sample_value("hookline_deliveries_deferred_total") or 0.0) == deferred
    assert len(healthy.requests) == 3
