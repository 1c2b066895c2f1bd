"""The sender service's lifecycle: open everything, consume `{ns}.deliveries`, drain, close.

Shutdown order matters: stop consuming; let messages in hand finish within
`HOOKLINE_SHUTDOWN_GRACE` (those that do not are left unacked and go back to the queue);
flush the attempt log; then close the HTTP pool, the broker, the cache and the pool.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

from services.sender.attempt_log import AttemptLog
from services.sender.client import create_pool as create_http_pool
from services.sender.disable import run_sweeper
from services.sender.overdue import OverdueSweep
from services.sender.requeue import Requeue
from services.sender.worker import DeliveryWorker, WorkerParts
from shared.amqp import connect, declare
from shared.consuming import Consumer, unblocked
from shared.db import create_pool
from shared.inbound import Inbound
from shared.logging import get_logger
from shared.ops import Readiness
from shared.secretbox import SecretBox
from shared.settings import Settings
from shared.subscription_cache import SubscriptionCache
from shared.supervision import spawn
from shared.topology import topology_of

log = get_logger("sender")

_LOG_CLOSE_TIMEOUT_S = 5.0


async def run(settings: Settings, stop: asyncio.Event, readiness: Readiness) -> None:
    """Run the sender until `stop` is set (see the module's docstring for the shutdown)."""
    database_url = settings.database_url.get_secret_value()
    topology = topology_of(settings)
    box = SecretBox(settings.secret_key)
    async with AsyncExitStack() as stack:
        pool = await create_pool(database_url, size=settings.db_pool_size)
        stack.push_async_callback(pool.close)
        cache = SubscriptionCache(
            database_url, box, service="sender", max_size=settings.sender_subscription_cache_size
        )
        await cache.start()
        stack.push_async_callback(cache.close)
        connection = await connect(settings, "sender")
        stack.push_async_callback(connection.close)
        # A mandatory publish that no queue takes (one deleted by hand) must fail, not
        # "succeed" with the message dropped.
        publish_channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        exchanges, queues = topology.for_sender()
        await declare(publish_channel, exchanges, queues)
        http = create_http_pool(settings)
        stack.push_async_callback(http.close)
        attempt_log = AttemptLog(pool)
        attempt_log.start()
        stack.push_async_callback(attempt_log.close, _LOG_CLOSE_TIMEOUT_S)

        requeue = Requeue(publish_channel, topology)
        worker: DeliveryWorker | None = None

        async def handle(message: Inbound) -> None:
            assert worker is not None
            await worker.handle(message)

        # Its own connection, restored after any outage by `shared.consuming`; the worker
        # settles its messages itself (batch messages have their own rules) on its acker.
        consumer = Consumer(
            settings,
            "sender-consume",
            topology.deliveries_queue,
            handle,
            prefetch=settings.sender_prefetch,
            settles=False,
            gate=unblocked(connection),
        )
        worker = DeliveryWorker(
            WorkerParts(settings, pool, cache, box, http, attempt_log, requeue, consumer.acker)
        )
        await consumer.start()
        # Prefixed: `hookline all` puts every service's checks in one Readiness.
        readiness.add("sender_subscriptions", cache.ready)
        readiness.add("sender_database", lambda: attempt_log.healthy and not pool.is_closing())
        readiness.add(
            "sender_broker",
            lambda: (
                connection.connected.is_set() and not publish_channel.is_closed and requeue.healthy
            ),
        )
        readiness.add("sender_consuming", lambda: consumer.consuming)
        log.info(
            "sender_started",
            queue=topology.deliveries_queue.name,
            prefetch=settings.sender_prefetch,
        )
        side = [
            spawn(run_sweeper(pool, settings.disable_after, stop), name="sender-failing-sweep"),
            spawn(
                OverdueSweep(pool, requeue, topology, settings, connection).run(stop),
                name="sender-overdue-sweep",
            ),
        ]
        try:
            await stop.wait()
        finally:
            await consumer.stop_consuming()
            await worker.drain(settings.shutdown_grace)
            await consumer.stop(0)
            for task in side:
                task.cancel()
            await asyncio.gather(*side, return_exceptions=True)
    log.info("sender_stopped")
