"""The ingest component: its lifecycle only (set up, serve until stopped, close in reverse)."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

from aio_pika.abc import AbstractChannel, AbstractRobustConnection

from services.api.app import start_api
from services.api.context import ApiContext
from services.ingest.consumer import IngestConsumer
from services.ingest.intake import Intake
from services.ingest.publisher import Publisher
from services.ingest.retention import Retention
from shared.amqp import connect, declare, is_blocked
from shared.consuming import unblocked
from shared.db import create_pool
from shared.event_types import Catalogue
from shared.logging import get_logger
from shared.ops import Readiness
from shared.secretbox import SecretBox
from shared.settings import Settings
from shared.supervision import spawn
from shared.targets import TargetPolicy
from shared.topology import topology_of

log = get_logger("ingest")


def _alive(connection: AbstractRobustConnection, channel: AbstractChannel) -> bool:
    """The publishing connection is up and its channel open (both restore by themselves)."""
    return connection.connected.is_set() and not channel.is_closed


async def run(settings: Settings, stop: asyncio.Event, readiness: Readiness) -> None:
    """Consume `{ns}.ingest` and serve the HTTP API until `stop` is set, then drain."""
    topology = topology_of(settings)
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
        exchanges, _ = await declare(publish_channel, *topology.for_ingest())

        publisher = Publisher(
            publish_channel,
            topology,
            exchanges,
            blocked=lambda: is_blocked(connection),
            batch=settings.batch_messages,
        )
        intake = Intake(
            pool,
            publisher,
            window_s=settings.idempotency_window,
            batch_delay_s=settings.ingest_batch_delay,
        )
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
        # Consuming on a connection of its own (`shared.consuming`): when RabbitMQ throttles
        # or blocks the publishing connection, the acks of consumed messages must not wait
        # behind it. While publishes are blocked the consumer takes no new work; the API
        # stays up (and ready) to answer 503 at once.
        consumer = IngestConsumer(
            settings, intake, publisher, catalogue, topology.ingest_queue, unblocked(connection)
        )
        await consumer.start()
        stack.push_async_callback(consumer.stop, settings.shutdown_grace)
        # Registered last: ready means the API listens and the consumer runs.
        readiness.add("ingest_postgres", lambda: catalogue.connected)
        readiness.add("ingest_rabbitmq", lambda: _alive(connection, publish_channel))
        readiness.add("ingest_consuming", lambda: consumer.consumer.consuming)
        retention = Retention(
            pool, retention_s=settings.retention, window_s=settings.idempotency_window
        )
        # Supervised: partitions must keep being made ahead, so ingest never runs without it.
        side = spawn(retention.run(stop), name="ingest-retention")
        stack.callback(side.cancel)
        log.info("ingest_started", queue=topology.ingest_queue.name)
        await stop.wait()
        log.info("ingest_stopping")
