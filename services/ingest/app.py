"""The ingest component: its lifecycle only (set up, serve until stopped, close in reverse)."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

from aio_pika.abc import AbstractRobustConnection

from services.ingest.api.app import start_api
from services.ingest.api.context import ApiContext
from services.ingest.consumer import IngestConsumer
from services.ingest.intake import Intake
from services.ingest.publisher import Publisher
from shared.acks import BatchAcker
from shared.amqp import connect, declare
from shared.db import create_pool
from shared.event_types import Catalogue
from shared.logging import get_logger
from shared.ops import Readiness
from shared.secretbox import SecretBox
from shared.settings import Settings
from shared.targets import TargetPolicy
from shared.topology import Exchange, Queue, Topology

log = get_logger("ingest")


def ingest_topology(topology: Topology) -> tuple[list[Exchange], list[Queue]]:
    """What ingest declares: its own objects, plus the queues it publishes into.

    Declaring fanout's queue means events published before fanout first starts wait there
    instead of being unroutable; the deliveries queue takes manual retries the same way.
    """
    exchanges, queues = topology.for_ingest()
    return (
        [*exchanges, topology.deliveries_exchange],
        [*queues, topology.fanout_queue, topology.deliveries_queue],
    )


def _alive(connection: AbstractRobustConnection) -> bool:
    return not connection.is_closed


async def run(settings: Settings, stop: asyncio.Event, readiness: Readiness) -> None:
    """Consume `{ns}.ingest` and serve the HTTP API until `stop` is set, then drain."""
    topology = Topology(settings.namespace, settings.retry_delays)
    database_url = settings.database_url.get_secret_value()
    async with AsyncExitStack() as stack:
        pool = await create_pool(database_url, size=settings.db_pool_size)
        stack.push_async_callback(pool.close)
        catalogue = Catalogue(database_url)
        await catalogue.start()
        stack.push_async_callback(catalogue.close)

        connection = await connect(settings, "ingest")
        stack.push_async_callback(connection.close)
        publish_channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        exchanges, _ = await declare(publish_channel, *ingest_topology(topology))
        # Consuming on a connection of its own: when RabbitMQ throttles the publishing
        # connection (credit flow), the acks of consumed messages must not wait behind it.
        consume_connection = await connect(settings, "ingest-consume")
        stack.push_async_callback(consume_connection.close)
        consume_channel = await consume_connection.channel()
        acker = BatchAcker(name="ingest-acks")
        acker.start()
        # Closed after the consumer drained and before its connection: the last acks go out.
        stack.push_async_callback(acker.close)
        await consume_channel.set_qos(prefetch_count=settings.ingest_prefetch)
        ingest_queue = await consume_channel.get_queue(topology.ingest_queue.name, ensure=False)

        publisher = Publisher(publish_channel, topology, exchanges, batch=settings.batch_messages)
        intake = Intake(pool, publisher)
        intake.start()
        stack.push_async_callback(intake.close)

        ctx = ApiContext(
            settings=settings,
            pool=pool,
            box=SecretBox(settings.secret_key),
            catalogue=catalogue,
            intake=intake,
            publisher=publisher,
            targets=TargetPolicy.from_settings(settings),
        )
        api = await start_api(ctx)
        stack.push_async_callback(api.cleanup)
        consumer = IngestConsumer(settings, intake, publisher, catalogue, acker)
        await consumer.start(ingest_queue)
        stack.push_async_callback(consumer.stop, settings.shutdown_grace)
        # Registered last: ready means the API listens and the consumer runs.
        readiness.add("ingest_postgres", lambda: catalogue.connected)
        readiness.add("ingest_rabbitmq", lambda: _alive(connection) and _alive(consume_connection))
        log.info("ingest_started", queue=topology.ingest_queue.name)
        await stop.wait()
        log.info("ingest_stopping")
