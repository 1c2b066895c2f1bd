"""Fanout's lifecycle: set up, consume `{ns}.fanout` until told to stop, drain, close."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from functools import partial

from services.fanout.publisher import DeliveryPublisher
from services.fanout.router import Router
from shared.amqp import connect, declare
from shared.batching import BatchWriter
from shared.consuming import Consumer, unblocked
from shared.db import create_pool
from shared.logging import get_logger
from shared.ops import Readiness
from shared.routing_cache import RoutingCache
from shared.settings import Settings
from shared.stores import deliveries
from shared.topology import topology_of

log = get_logger("fanout")

_BATCH_MAX_ROWS = 2000
_BATCH_MAX_DELAY_S = 0.003


async def run(settings: Settings, stop: asyncio.Event, readiness: Readiness) -> None:
    """Run fanout until `stop` is set; in-flight events finish within `shutdown_grace`."""
    topology = topology_of(settings)
    database_url = settings.database_url.get_secret_value()
    async with AsyncExitStack() as stack:
        pool = await create_pool(database_url, size=settings.db_pool_size)
        stack.push_async_callback(pool.close)
        cache = RoutingCache(
            database_url, service="fanout", max_size=settings.fanout_route_cache_size
        )
        await cache.start()
        stack.push_async_callback(cache.close)

        connection = await connect(settings, "fanout")
        stack.push_async_callback(connection.close)
        # Publishing and consuming on separate channels: flow control on publishes then
        # never holds back the acks of the consuming channel.
        # Mandatory publishes that no queue takes raise instead of passing as confirmed.
        publish_channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        await declare(publish_channel, *topology.for_fanout())
        writer: BatchWriter[deliveries.DeliveryRow, set[str]] = BatchWriter(
            partial(deliveries.insert_pending, pool),
            name="deliveries",
            max_rows=_BATCH_MAX_ROWS,
            max_delay_s=_BATCH_MAX_DELAY_S,
            is_row_error=deliveries.is_row_error,
        )
        writer.start()
        stack.push_async_callback(writer.close)
        router = Router(
            cache=cache,
            writer=writer,
            publisher=DeliveryPublisher(
                publish_channel,
                topology.deliveries_exchange.name,
                batch=settings.batch_messages,
            ),
            default_exchange=publish_channel.default_exchange,
            rejected_queue=topology.fanout_rejected_queue.name,
            topology=topology,
        )
        readiness.add("fanout_subscriptions", cache.ready)
        readiness.add("fanout_database", lambda: router.storage_ok and not pool.is_closing())
        # Consuming on a connection of its own that `shared.consuming` restores after any
        # outage; it takes no new events while RabbitMQ blocks the publishing connection.
        consumer = Consumer(
            settings,
            "fanout-consume",
            topology.fanout_queue,
            router.handle,
            prefetch=settings.fanout_prefetch,
            gate=unblocked(connection),
        )
        await consumer.start()
        # Stopped first: in-flight events finish before the writer and connection close.
        stack.push_async_callback(consumer.stop, settings.shutdown_grace)
        readiness.add(
            "fanout_broker", lambda: connection.connected.is_set() and not publish_channel.is_closed
        )
        readiness.add("fanout_consuming", lambda: consumer.consuming)
        log.info(
            "fanout_started", queue=topology.fanout_queue.name, prefetch=settings.fanout_prefetch
        )
        await stop.wait()
        log.info("fanout_stopping")
    log.info("fanout_stopped")
