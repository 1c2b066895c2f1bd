"""HOOKLINE_QUEUE_TYPE=quorum: every queue quorum, retries and the dead queue still work, and
a queue of the other type stops the service with the way out."""

from __future__ import annotations

import asyncio

import aio_pika
import asyncpg
import pytest

from services.ingest.app import run as run_ingest
from shared.amqp import QueueTypeMismatch, connect, declare
from shared.ops import Readiness
from shared.settings import Settings
from shared.topology import Topology
from tests.support import AMQP_URL, rabbitmqctl
from tests.support.pipeline import WAIT_S, running_pipeline


async def queue_types(namespace: str) -> dict[str, str]:
    listing = await rabbitmqctl("list_queues", "name", "type", "-q")
    found = {}
    for line in listing.splitlines():
        parts = line.split("\t")
        if len(parts) == 2 and parts[0].startswith(f"{namespace}."):
            found[parts[0]] = parts[1]
    return found


async def test_quorum_queues_retry_and_dead_letter(settings: Settings) -> None:
    settings = settings.model_copy(update={"queue_type": "quorum"})
    async with running_pipeline(settings) as pipeline:
        pipeline.receiver.script("/hook", 500)
        subscription_id = await pipeline.subscribe()
        await pipeline.publish("doomed")
        # One first attempt and one per retry delay (200ms, 400ms), each through a quorum
        # retry queue's TTL and dead-letter exchange.
        await pipeline.receiver.wait_for(lambda got: len(got) >= 3, WAIT_S)
        dead = pipeline.topology.dead_queue.name
        async with asyncio.timeout(WAIT_S):
            while (  # noqa: ASYNC110 - polling the broker
                await pipeline.channel.declare_queue(dead, passive=True)
            ).declaration_result.message_count != 1:
                await asyncio.sleep(0.1)
        types = await queue_types(settings.namespace)
    expected = Topology(settings.namespace, settings.retry_delays).everything()[1]
    assert {q.name for q in expected} <= set(types)
    assert set(types.values()) == {"quorum"}
    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    try:
        status = await conn.fetchval(
            "SELECT status FROM deliveries WHERE subscription_id = $1", subscription_id
        )
    finally:
        await conn.close()
    assert status == "failed"
    assert len(pipeline.receiver.received) == 3


async def test_a_queue_of_the_other_type_stops_the_service_naming_the_migration(
    settings: Settings,
) -> None:
    classic = Topology(settings.namespace, settings.retry_delays)
    connection = await connect(settings, "test-declare")
    try:
        await declare(await connection.channel(), [classic.ingest_exchange], [classic.ingest_queue])
    finally:
        await connection.close()
    quorum = settings.model_copy(update={"queue_type": "quorum"})
    with pytest.raises(QueueTypeMismatch) as failure:
        await asyncio.wait_for(run_ingest(quorum, asyncio.Event(), Readiness()), WAIT_S)
    message = str(failure.value)
    assert f"{settings.namespace}.ingest" in message
    assert "HOOKLINE_QUEUE_TYPE" in message and "docs/reliability.md" in message


async def test_past_the_delivery_limit_a_message_goes_to_its_rejected_queue(
    settings: Settings,
) -> None:
    topology = Topology(settings.namespace, settings.retry_delays, "quorum", delivery_limit=2)
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        _, queues = await declare(
            channel, [topology.ingest_exchange], [topology.ingest_queue, topology.rejected_queue]
        )
        exchange = await channel.get_exchange(topology.ingest_exchange.name)
        await exchange.publish(aio_pika.Message(b'{"type": "a.b"}', message_id="m1"), "a.b")
        work, rejected = queues[topology.ingest_queue.name], queues[topology.rejected_queue.name]
        returned = 0
        async with asyncio.timeout(WAIT_S):
            while (moved := await rejected.get(fail=False, no_ack=True)) is None:
                message = await work.get(fail=False)
                if message is None:
                    await asyncio.sleep(0.05)
                    continue
                await message.nack(requeue=True)
                returned += 1
        assert moved.message_id == "m1" and moved.body == b'{"type": "a.b"}'
        assert returned >= 2  # returned up to the limit, then moved, not dropped
    finally:
        await connection.close()
