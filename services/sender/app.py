"""The sender service's lifecycle: open everything, consume `{ns}.deliveries`, drain, close.

Shutdown order matters: stop consuming; let messages in hand finish within
`HOOKLINE_SHUTDOWN_GRACE` (those that do not are left unacked and go back to the queue);
flush the attempt log; then close the HTTP session, the broker, the cache and the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import AsyncExitStack

from services.sender.attempt_log import AttemptLog
from services.sender.client import create_session
from services.sender.disable import run_sweeper
from services.sender.requeue import Requeue
from services.sender.worker import DeliveryWorker, WorkerParts
from shared.acks import BatchAcker
from shared.amqp import connect, declare
from shared.db import create_pool
from shared.logging import get_logger
from shared.ops import Readiness
from shared.secretbox import SecretBox
from shared.settings import Settings
from shared.subscription_cache import SubscriptionCache
from shared.topology import Topology

log = get_logger("sender")

_LOG_CLOSE_TIMEOUT_S = 5.0


async def run(settings: Settings, stop: asyncio.Event, readiness: Readiness) -> None:
    """Run the sender until `stop` is set (see the module's docstring for the shutdown)."""
    database_url = settings.database_url.get_secret_value()
    topology = Topology(settings.namespace, settings.retry_delays)
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
        consume_channel = await connection.channel()
        await consume_channel.set_qos(prefetch_count=settings.sender_prefetch)
        exchanges, queues = topology.for_sender()
        _, declared = await declare(consume_channel, exchanges, queues)
        session = create_session(settings)
        stack.push_async_callback(session.close)
        attempt_log = AttemptLog(pool)
        attempt_log.start()
        stack.push_async_callback(attempt_log.close, _LOG_CLOSE_TIMEOUT_S)

        acker = BatchAcker(name="sender-acks")
        acker.start()
        # Registered after the connection: the last acks go out before it closes.
        stack.push_async_callback(acker.close)
        requeue = Requeue(publish_channel, topology)
        worker = DeliveryWorker(
            WorkerParts(settings, pool, cache, box, session, attempt_log, requeue, acker)
        )
        # Prefixed: `hookline all` puts every service's checks in one Readiness.
        readiness.add("sender_subscriptions", cache.ready)
        readiness.add("sender_database", lambda: attempt_log.healthy and not pool.is_closing())
        readiness.add("sender_broker", lambda: connection.connected.is_set() and requeue.healthy)

        queue = declared[topology.deliveries_queue.name]
        consumer_tag = await queue.consume(worker.handle)
        log.info("sender_started", queue=queue.name, prefetch=settings.sender_prefetch)
        sweeper = asyncio.create_task(
            run_sweeper(pool, settings.disable_after, stop), name="sender-failing-sweep"
        )
        try:
            await _until_stopped(stop, sweeper)
        finally:
            with contextlib.suppress(Exception):
                await queue.cancel(consumer_tag)
            await worker.drain(settings.shutdown_grace)
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
    log.info("sender_stopped")


async def _until_stopped(stop: asyncio.Event, sweeper: asyncio.Task[None]) -> None:
    """Wait for `stop`; raise what killed the sweeper if it dies first (a sender must not run
    without it unnoticed)."""
    stopped = asyncio.create_task(stop.wait(), name="sender-stop-wait")
    try:
        await asyncio.wait({stopped, sweeper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if sweeper.done() and not sweeper.cancelled() and sweeper.exception() is not None:
        raise sweeper.exception()  # type: ignore[misc]
