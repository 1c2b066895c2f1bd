"""The overdue sweep publishes again, once, a pending delivery whose message was lost, and
leaves alone one whose message is still on its way."""

from __future__ import annotations

import asyncio

import aio_pika
import asyncpg
import orjson

from shared.ids import delivery_id, new_id
from shared.settings import Settings
from shared.wire.messages import EventMessage
from tests.support.pipeline import Pipeline, running_pipeline

LOST_AGO = "2 hours"


async def lost_delivery(pipeline: Pipeline, subscription_id: str, marker: str) -> tuple[str, str]:
    """An event and its pending delivery as fanout left them two hours ago, with the message
    gone (its queue deleted, its node lost): nothing will ever send it."""
    event_id = new_id("evt")
    conn = await asyncpg.connect(pipeline.settings.database_url.get_secret_value())
    try:
        await conn.execute(
            "INSERT INTO events (id, type, data, source, created_at, dispatched_at)"
            f" VALUES ($1, 'test.fault', $2::jsonb, 'amqp', now() - interval '{LOST_AGO}',"
            f" now() - interval '{LOST_AGO}')",
            event_id,
            orjson.dumps({"marker": marker}).decode(),
        )
        dlv = delivery_id(event_id, subscription_id)
        await conn.execute(
            "INSERT INTO deliveries (id, event_id, subscription_id, created_at)"
            f" VALUES ($1, $2, $3, now() - interval '{LOST_AGO}')",
            dlv,
            event_id,
            subscription_id,
        )
    finally:
        await conn.close()
    return event_id, dlv


async def republished(pipeline: Pipeline) -> float:
    for line in (await pipeline.metrics()).splitlines():
        if line.startswith("hookline_overdue_deliveries_republished_total "):
            return float(line.split(" ")[1])
    return 0.0


async def status_of(pipeline: Pipeline, dlv: str) -> str:
    conn = await asyncpg.connect(pipeline.settings.database_url.get_secret_value())
    try:
        return str(await conn.fetchval("SELECT status FROM deliveries WHERE id = $1", dlv))
    finally:
        await conn.close()


async def test_a_lost_delivery_is_published_again_once(settings: Settings) -> None:
    settings = settings.model_copy(update={"overdue_after": 1.0})
    async with running_pipeline(settings) as pipeline:
        subscription_id = await pipeline.subscribe()
        before = await republished(pipeline)
        event_id, dlv = await lost_delivery(pipeline, subscription_id, "lost")
        await pipeline.delivered("lost")

        async def succeeded() -> bool:
            return await status_of(pipeline, dlv) == "succeeded"

        await pipeline.until(succeeded, "the lost delivery succeeded")
        assert await republished(pipeline) == before + 1
        # Two more passes: it is not sent again.
        await asyncio.sleep(2 * (2 * settings.delivery_timeout + 1))
        assert pipeline.count("lost") == 1
        assert pipeline.receiver.received[-1].webhook_id == event_id


async def test_a_delivery_whose_event_waits_in_the_fanout_queue_is_not_sent_twice(
    settings: Settings,
) -> None:
    settings = settings.model_copy(update={"overdue_after": 1.0})
    # No fanout running: its queue keeps what it is given.
    async with running_pipeline(settings, services=("ingest", "sender")) as pipeline:
        subscription_id = await pipeline.subscribe()
        before = await republished(pipeline)
        event_id, dlv = await lost_delivery(pipeline, subscription_id, "in-flight")
        # Its event waits in fanout's queue (fanout down, say): a live message that fanout
        # turns into this very delivery once it is back, so the sweep must leave it alone.
        event = EventMessage(event_id, "test.fault", None, b"{}", 0.0)
        await pipeline.channel.default_exchange.publish(
            aio_pika.Message(event.body, headers=event.headers(), message_id=event_id),
            pipeline.topology.fanout_queue.name,
        )
        await asyncio.sleep(3 * (2 * settings.delivery_timeout + 1))
        assert pipeline.count("in-flight") == 0
        assert await republished(pipeline) == before
        assert await status_of(pipeline, dlv) == "pending"
