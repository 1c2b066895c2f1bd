"""Deliveries the sender cannot finish normally are never lost: not when the queue they must
go to next is missing, not when handling them fails every time."""

from __future__ import annotations

import aio_pika
from pydantic import SecretStr

from shared.secretbox import new_key
from shared.settings import Settings
from shared.topology import SEND_ROUTING_KEY, Topology
from shared.wire.messages import H_DELIVERY_ID, H_ERROR, DeliveryMessage
from shared.wire.properties import delivery_json_message
from tests.support.sender import (
    AMQP_URL,
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


async def _delete_queue(name: str) -> None:
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        await channel.queue_delete(name)
    finally:
        await connection.close()


async def _publish_undeclared(topology: Topology, msg: DeliveryMessage) -> None:
    """Publish without declaring (which would bring a deleted queue back)."""
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        exchange = await channel.get_exchange(topology.deliveries_exchange.name)
        await exchange.publish(delivery_json_message(msg), routing_key=SEND_ROUTING_KEY)
    finally:
        await connection.close()


async def test_a_retry_with_its_retry_queue_deleted_goes_on_as_scheduled(
    settings: Settings,
) -> None:
    topology = Topology(settings.namespace, settings.retry_delays)
    receiver = Receiver(Answer(500), Answer(500), Answer(200))
    async with receiver.running(), database(settings) as conn, sender_running(settings):
        sub_id, _ = await insert_subscription(conn, receiver.url())
        msg = await insert_delivery(conn, sub_id)
        # An operator deleted the queue the first retry must wait in.
        await _delete_queue(topology.retry_queue(settings.retry_delays[0]).name)
        await _publish_undeclared(topology, msg)

        # The retry came back unroutable: the sender declared its queues again and published
        # it there, instead of sending attempt 1 again and again.
        row = await wait_for_status(conn, msg.delivery_id, "succeeded")
        attempts = await attempts_of(conn, msg.delivery_id)

    assert row["status"] == "succeeded"
    assert [(a["attempt"], a["status_code"]) for a in attempts] == [(1, 500), (2, 500), (3, 200)]
    assert len(receiver.requests) == 3
    assert {r.headers["webhook-id"] for r in receiver.requests} == {msg.event_id}


async def test_a_delivery_whose_dead_queue_was_deleted_still_ends_there_once(
    settings: Settings,
) -> None:
    topology = Topology(settings.namespace, settings.retry_delays)
    receiver = Receiver(Answer(500))
    async with receiver.running(), database(settings) as conn, sender_running(settings):
        sub_id, _ = await insert_subscription(conn, receiver.url())
        msg = await insert_delivery(conn, sub_id)
        await _delete_queue(topology.dead_queue.name)
        await _publish_undeclared(topology, msg)

        row = await wait_for_status(conn, msg.delivery_id, "failed")
        dead = await queue_messages(settings, topology.dead_queue.name)
        attempts = await attempts_of(conn, msg.delivery_id)

    assert [h[H_DELIVERY_ID] for h in dead] == [msg.delivery_id]
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    assert len(receiver.requests) == 3
    assert row["status"] == "failed"


async def test_a_delivery_that_always_fails_ends_in_the_dead_queue(settings: Settings) -> None:
    topology = Topology(settings.namespace, settings.retry_delays)
    receiver = Receiver(Answer(200))
    async with (
        variant(settings, secret_key=SecretStr(new_key())) as keyed,
        receiver.running(),
        database(keyed) as conn,
        sender_running(keyed),
    ):
        # A secret no key here opens: handling this delivery fails every time.
        sub_id, _ = await insert_subscription(conn, receiver.url(), secret="enc:v1:garbage")
        msg = await insert_delivery(conn, sub_id)
        await publish(keyed, msg)

        row = await wait_for_status(conn, msg.delivery_id, "failed", timeout_s=60.0)
        dead = await queue_messages(keyed, topology.dead_queue.name)
        left = await queue_messages(keyed, topology.deliveries_queue.name)

    assert row["status"] == "failed"
    assert [h[H_DELIVERY_ID] for h in dead] == [msg.delivery_id]
    assert "ConfigurationError" in dead[0][H_ERROR]
    assert "garbage" not in dead[0][H_ERROR]
    assert left == []
    assert receiver.requests == []
