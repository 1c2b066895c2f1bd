"""Fanout's lifecycle: set up, consume `{ns}.fanout` until told to stop, drain, close."""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import AsyncExitStack
from functools import partial

from services.fanout.deliveries import DeliveryRow, insert_deliveries, is_row_error
from services.fanout.publisher import DeliveryPublisher
from services.fanout.router import Router
from shared.amqp import connect, declare
from shared.batching import BatchWriter
from shared.db import create_pool
from shared.logging import get_logger
from shared.ops import Readiness
from shared.secretbox import SecretBox
from shared.settings import Settings
from shared.subscription_cache import SubscriptionCache
from shared.topology import Topology

log = get_logger("fanout")

_BATCH_MAX_ROWS = 2000
_BATCH_MAX_DELAY_S = 0.003


async def run(settings: Settings, stop: asyncio.Event, readiness: Readiness) -> None:
    """Run fanout until `stop` is set; in-flight events finish within `shutdown_grace`."""
    topology = Topology(settings.namespace, settings.retry_delays)
    database_url = settings.database_url.get_secret_value()
    async with AsyncExitStack() as stack:
        pool = await create_pool(database_url, size=settings.db_pool_size)
        stack.push_async_callback(pool.close)
        cache = SubscriptionCache(database_url, SecretBox(settings.secret_key), service="fanout")
        await cache.start()
        stack.push_async_callback(cache.close)

        connection = await connect(settings, "fanout")
        stack.push_async_callback(connection.close)
        # Publishing and consuming on separate channels: flow control on publishes then
        # never holds back the acks of the consuming channel.
        # Mandatory publishes that no queue takes raise instead of passing as confirmed.
        publish_channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        await declare(publish_channel, *topology.for_fanout())
        # Deliveries of a parked subscription go straight to a retry queue (see
        # services.sender.park); the sender declares them too, with the same arguments.
        await declare(publish_channel, [], list(topology.retry_queues))
        consume_channel = await connection.channel()
        await consume_channel.set_qos(prefetch_count=settings.fanout_prefetch)
        queue = await consume_channel.get_queue(topology.fanout_queue.name)

        writer: BatchWriter[DeliveryRow] = BatchWriter(
            partial(insert_deliveries, pool),
            name="deliveries",
            max_rows=_BATCH_MAX_ROWS,
            max_delay_s=_BATCH_MAX_DELAY_S,
            is_row_error=is_row_error,
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
        readiness.add("fanout_broker", connection.connected.is_set)

        consumer_tag = await queue.consume(router.handle)
        log.info("fanout_started", queue=queue.name, prefetch=settings.fanout_prefetch)
        await stop.wait()
        log.info("fanout_stopping")
        # With the broker gone the cancel fails; the events in hand must still be drained.
        with contextlib.suppress(Exception):
            await queue.cancel(consumer_tag)
        await router.drain(settings.shutdown_grace)
    log.info("fanout_stopped")
