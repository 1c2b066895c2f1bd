"""Wire format 2 on the real broker and database: many events per message into fanout, many
deliveries per message into the sender, and format 1 messages (what a version before it
publishes, in flight during a rolling upgrade) still delivered by the new code."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aio_pika
import pytest
from aio_pika.abc import AbstractRobustConnection
from standardwebhooks import Webhook

from services.fanout.publisher import DeliveryPublisher, EventDeliveries
from shared.ids import delivery_id
from shared.settings import Settings
from shared.topology import Topology
from shared.wire import batches
from shared.wire.messages import H_ERROR, EventMessage
from tests.integration.test_fanout import Fanout, _start, pairs
from tests.integration.test_sender_batches import _event_for
from tests.support import free_port
from tests.support.fanout import insert_subscription as insert_matching
from tests.support.sender import (
    AMQP_URL,
    Answer,
    Receiver,
    database,
    insert_subscription,
    publish,
    queue_depths,
    sender_running,
    variant,
    wait_for_status,
)


@pytest.fixture
async def connection() -> AsyncIterator[AbstractRobustConnection]:
    value = await aio_pika.connect_robust(AMQP_URL)
    yield value
    await value.close()


@pytest.fixture
async def batching_fanout(
    settings: Settings, connection: AbstractRobustConnection
) -> AsyncIterator[Fanout]:
    """Fanout of this version with HOOKLINE_BATCH_MESSAGES on."""
    async for value in _start(settings.model_copy(update={"batch_messages": True}), connection):
        yield value


async def _publish_events(f: Fanout, events: list[EventMessage]) -> None:
    """Publish `events` as one format 2 message, as ingest does with batching on."""
    exchange = await f.channel.get_exchange(f.topology.events_exchange.name)
    await exchange.publish(
        aio_pika.Message(
            batches.encode_events(events),
            headers=batches.headers_for(batches.EVENTS, len(events)),
            delivery_mode=2,
        ),
        "hookline.batch",
    )


async def test_many_events_in_one_message_become_one_message_of_their_deliveries(
    batching_fanout: Fanout,
) -> None:
    f = batching_fanout
    invoices = await insert_matching(f.db, ["invoice.*"])
    everything = await insert_matching(f.db, ["*"])
    acme = await insert_matching(f.db, ["*"], tenant_id="acme")
    paid = await f.event("invoice.paid")
    shipped = await f.event("order.shipped")
    tenant = await f.event("order.shipped", tenant_id="acme")
    await _publish_events(f, [paid, shipped, tenant])

    [message] = await f.take(f.topology.deliveries_queue.name, 1)
    assert batches.kind_of(message.headers) == batches.DELIVERIES
    deliveries = batches.deliveries_of(message)
    assert pairs(deliveries) == {
        (paid.event_id, invoices),
        (paid.event_id, everything),
        (shipped.event_id, everything),
        (tenant.event_id, acme),
    }
    bodies = {e.event_id: e.body for e in (paid, shipped, tenant)}
    assert all(d.body == bodies[d.event_id] and d.attempt == 1 for d in deliveries)
    rows = await f.db.fetch("SELECT id FROM deliveries")
    assert sorted(r["id"] for r in rows) == sorted(d.delivery_id for d in deliveries)
    assert await f.queue_depth(f.topology.fanout_queue.name) == 0


async def test_an_old_format_event_is_still_routed_by_a_batching_fanout(
    batching_fanout: Fanout,
) -> None:
    # An event an ingest of the previous version published before it was upgraded.
    f = batching_fanout
    sub = await insert_matching(f.db, ["invoice.*"])
    paid = await f.event("invoice.paid")
    await f.publish(paid)

    deliveries = await f.deliveries(1)
    assert pairs(deliveries) == {(paid.event_id, sub)}
    assert await f.leftover_deliveries() == []


async def test_an_unstored_event_of_a_batch_is_rejected_alone(batching_fanout: Fanout) -> None:
    f = batching_fanout
    sub = await insert_matching(f.db, ["invoice.*"])
    stored = await f.event("invoice.paid")
    missing = await f.event("invoice.paid", stored=False)
    await _publish_events(f, [stored, missing])

    [rejected] = await f.take(f.topology.fanout_rejected_queue.name, 1)
    assert rejected.message_id == missing.event_id
    assert str(rejected.headers[H_ERROR]).startswith("not_stored")
    # A format 1 event message: it can be published again to {ns}.events as it is.
    assert EventMessage.from_amqp(dict(rejected.headers), rejected.body).event_id == (
        missing.event_id
    )
    [message] = await f.take(f.topology.deliveries_queue.name, 1)
    assert pairs(batches.deliveries_of(message)) == {(stored.event_id, sub)}


async def test_a_malformed_batch_is_rejected_not_lost(batching_fanout: Fanout) -> None:
    f = batching_fanout
    exchange = await f.channel.get_exchange(f.topology.events_exchange.name)
    await exchange.publish(
        aio_pika.Message(
            b"garbage", headers=batches.headers_for(batches.EVENTS, 1), delivery_mode=2
        ),
        "hookline.batch",
    )
    [rejected] = await f.take(f.topology.fanout_rejected_queue.name, 1)
    assert str(rejected.headers[H_ERROR]).startswith("malformed")
    assert rejected.body == b"garbage"


async def _publish_format_2(settings: Settings, routes: list[EventDeliveries]) -> None:
    """Publish deliveries exactly as a batching fanout does."""
    await publish(settings)  # declares the topology
    topology = Topology(settings.namespace, settings.retry_delays)
    connection = await aio_pika.connect_robust(AMQP_URL)
    try:
        channel = await connection.channel(publisher_confirms=True)
        publisher = DeliveryPublisher(channel, topology.deliveries_exchange.name, batch=True)
        await publisher.publish_many(routes)
    finally:
        await connection.close()


def _route(event: EventMessage, subs: list[str]) -> EventDeliveries:
    return EventDeliveries(
        event, [(delivery_id(event.event_id, s), event.event_id, s) for s in subs]
    )


async def test_the_sender_delivers_every_delivery_of_a_format_2_message_once_signed(
    settings: Settings,
) -> None:
    receiver = Receiver(Answer(200))
    async with receiver.running(), database(settings) as conn:
        subs, secrets = [], {}
        for i in range(2):
            sub, secret = await insert_subscription(conn, receiver.url(f"/s{i}"))
            subs.append(sub)
            secrets[f"/s{i}"] = secret
        events = [await _event_for(conn, subs) for _ in range(3)]
        await _publish_format_2(settings, [_route(e, subs) for e in events])
        async with sender_running(settings):
            for event in events:
                for sub in subs:
                    await wait_for_status(conn, delivery_id(event.event_id, sub), "succeeded")
            depths = await queue_depths(settings)

    seen = sorted((r.path, r.headers["webhook-id"]) for r in receiver.requests)
    assert seen == sorted((f"/s{i}", e.event_id) for i in range(2) for e in events)
    bodies = {e.event_id: e.body for e in events}
    for request in receiver.requests:
        assert request.body == bodies[request.headers["webhook-id"]]
        Webhook(secrets[request.path]).verify(request.body, request.headers)
    assert set(depths.values()) == {0}


async def test_a_redelivered_format_2_message_sends_nothing_twice(settings: Settings) -> None:
    receiver = Receiver(Answer(200))
    topology = Topology(settings.namespace, settings.retry_delays)
    async with receiver.running(), database(settings) as conn:
        sub, _ = await insert_subscription(conn, receiver.url("/s"))
        done, todo = await _event_for(conn, [sub]), await _event_for(conn, [sub])
        # A sender died after delivering the first event of the message, before its ack.
        await conn.execute(
            "UPDATE deliveries SET status = 'succeeded', attempts = 1 WHERE id = $1",
            delivery_id(done.event_id, sub),
        )
        await _publish_format_2(settings, [_route(done, [sub]), _route(todo, [sub])])
        connection = await aio_pika.connect(AMQP_URL)
        try:
            channel = await connection.channel()
            queue = await channel.get_queue(topology.deliveries_queue.name)
            message = await queue.get(no_ack=False, timeout=5)
            await message.nack(requeue=True)  # handed out and returned: redelivered
        finally:
            await connection.close()
        async with sender_running(settings):
            await wait_for_status(conn, delivery_id(todo.event_id, sub), "succeeded")

    assert [r.headers["webhook-id"] for r in receiver.requests] == [todo.event_id]


async def test_a_batch_of_one_busy_target_waits_for_its_slots_instead_of_deferring(
    settings: Settings,
) -> None:
    # One tenant's events in one message, more than its target's share of slots: a healthy
    # target frees slots in milliseconds, so none of them goes round a retry queue.
    receiver = Receiver(Answer(200))
    async with (
        variant(settings, sender_per_target_concurrency=2) as capped,
        receiver.running(),
        database(capped) as conn,
    ):
        sub, _ = await insert_subscription(conn, receiver.url("/s"))
        events = [await _event_for(conn, [sub]) for _ in range(20)]
        await _publish_format_2(capped, [_route(e, [sub]) for e in events])
        async with sender_running(capped):
            for event in events:
                await wait_for_status(conn, delivery_id(event.event_id, sub), "succeeded")
        rows = await conn.fetch(
            "SELECT attempts, next_attempt_at FROM deliveries WHERE subscription_id = $1", sub
        )

    assert sorted(r.headers["webhook-id"] for r in receiver.requests) == sorted(
        e.event_id for e in events
    )
    assert {(r["attempts"], r["next_attempt_at"]) for r in rows} == {(1, None)}


async def test_a_second_copy_of_a_format_2_message_sends_nothing_twice(
    settings: Settings,
) -> None:
    # Fanout publishes deliveries again when a confirm of the first copy was lost: a copy
    # consumed after the first was delivered sends nothing again (it is not "redelivered").
    receiver = Receiver(Answer(200))
    async with receiver.running(), database(settings) as conn:
        sub, _ = await insert_subscription(conn, receiver.url("/s"))
        first = [await _event_for(conn, [sub]) for _ in range(2)]
        late = await _event_for(conn, [sub])
        async with sender_running(settings):
            await _publish_format_2(settings, [_route(e, [sub]) for e in first])
            for event in first:
                await wait_for_status(conn, delivery_id(event.event_id, sub), "succeeded")
            # The copy, with one more event in the same message: once that one is
            # delivered, the whole message was handled (it is acked as one).
            await _publish_format_2(settings, [_route(e, [sub]) for e in (*first, late)])
            await wait_for_status(conn, delivery_id(late.event_id, sub), "succeeded")

    assert sorted(r.headers["webhook-id"] for r in receiver.requests) == sorted(
        e.event_id for e in (*first, late)
    )


async def test_deliveries_stored_just_now_travel_marked_fresh_and_a_second_routing_not(
    batching_fanout: Fanout,
) -> None:
    f = batching_fanout
    sub = await insert_matching(f.db, ["invoice.*"])
    paid = await f.event("invoice.paid")
    await _publish_events(f, [paid])
    [first] = await f.take(f.topology.deliveries_queue.name, 1)
    # The same event again (ingest publishes it again after a crash before recording it
    # dispatched): its row exists, so its delivery may already be on its way.
    await _publish_events(f, [paid])
    [second] = await f.take(f.topology.deliveries_queue.name, 1)

    assert pairs(batches.deliveries_of(first)) == {(paid.event_id, sub)}
    assert pairs(batches.deliveries_of(second)) == {(paid.event_id, sub)}
    assert batches.is_fresh(first.headers)
    assert not batches.is_fresh(second.headers)


async def test_an_event_routed_twice_reaches_its_subscription_once(
    batching_fanout: Fanout, settings: Settings
) -> None:
    f = batching_fanout
    receiver = Receiver(Answer(200))
    async with receiver.running():
        sub, _ = await insert_subscription(f.db, receiver.url("/s"))
        first = [await f.event("invoice.paid") for _ in range(2)]
        late = await f.event("invoice.paid")
        # Its own metrics port: the fanout of this test holds the one of `settings`.
        async with sender_running(settings.model_copy(update={"metrics_port": free_port()})):
            await _publish_events(f, first)
            for event in first:
                await wait_for_status(f.db, delivery_id(event.event_id, sub), "succeeded")
            # Routed again with one new event: the new one is delivered, the others not again.
            await _publish_events(f, [*first, late])
            await wait_for_status(f.db, delivery_id(late.event_id, sub), "succeeded")

    assert sorted(r.headers["webhook-id"] for r in receiver.requests) == sorted(
        e.event_id for e in (*first, late)
    )
