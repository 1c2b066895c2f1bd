"""The backlog sampler: one process per deployment samples queues and pending work every few s.

Every service process runs it as a side task (`shared.runtime.serve`), and they elect one
sampler with a Postgres advisory lock held on a connection of its own: whichever process of
whichever service holds it samples; the others only try the lock again at each interval, so a
deployment of ten replicas pays for one sample, and the figures survive the loss of any one
service (the ingest pods all gone still leaves fanout's or the sender's to report that
`{ns}.ingest` fills up with no consumer). The lock is released with its connection when the
leader stops or dies, and another process takes over within an interval.

A session lock needs a session: a `HOOKLINE_DATABASE_URL` through PgBouncer must use session
pooling (the caches' LISTEN needs it as well).

Expected failures (broker or database away, the database dropped) are logged once per
change and retried at the next interval, showing nothing meanwhile; anything else is a bug
and ends the task, which stops the process like any failed component.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

import aio_pika
import asyncpg

from shared import __version__
from shared.backlog import BACKLOG, queue_kinds, sample_queues
from shared.errors import DATABASE_ERRORS
from shared.logging import get_logger
from shared.metrics import BUILD_INFO
from shared.ops import Readiness
from shared.settings import Settings
from shared.stores.ops import database_sample, try_sampler_lock
from shared.topology import Topology

log = get_logger("sampler")

SAMPLER_LOCK_KEY = 7214015
"""The advisory lock of the sampling leader (the migrator uses 7214001)."""

Component = Callable[[Settings, asyncio.Event, Readiness], Coroutine[Any, Any, None]]

# What Postgres failing raises, from the one list of the project: a backend terminated under
# the sampler's session can also surface as asyncpg's InternalClientError.
_EXPECTED = DATABASE_ERRORS
# A channel or connection the broker closed under us raises ChannelInvalidStateError, a
# RuntimeError rather than an AMQPError.
_EXPECTED_AMQP: tuple[type[BaseException], ...] = (
    aio_pika.exceptions.AMQPError,
    aio_pika.exceptions.ChannelInvalidStateError,
)


def sampler(service: str) -> tuple[str, Component]:
    """The `(name, component)` that `serve` runs beside a process's services."""

    async def run(settings: Settings, stop: asyncio.Event, readiness: Readiness) -> None:
        BUILD_INFO.labels(service, __version__).set(1)
        # Never gates readiness: a process without fresh backlog figures still does its work.
        readiness.add("metrics_sampler", lambda: True)
        if settings.metrics_sample_interval <= 0:
            await stop.wait()
            return
        body = asyncio.create_task(_sample_forever(settings), name="metrics-sampler-loop")
        stopped = asyncio.create_task(stop.wait(), name="metrics-sampler-stop")
        try:
            await asyncio.wait({body, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (body, stopped):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await body

    return "metrics-sampler", run


async def _sample_forever(settings: Settings) -> None:
    interval_s = settings.metrics_sample_interval
    last_error = ""
    while True:
        try:
            await _lead(settings, interval_s)
        except (*_EXPECTED, *_EXPECTED_AMQP) as exc:
            error = f"{type(exc).__name__}: {exc}"
            if error != last_error:
                log.warning("metrics_sampler_failed", error=error)
            last_error = error
        await asyncio.sleep(interval_s)


async def _lead(settings: Settings, interval_s: float) -> None:
    """Wait for the lock, then sample until something fails; the lock goes with `conn`."""
    conn = await asyncpg.connect(
        settings.database_url.get_secret_value(),
        timeout=10,
        server_settings={
            "application_name": "hookline-metrics-sampler",
            "statement_timeout": "5000",
        },
    )
    try:
        # A standby: one cheap query per interval until the leader goes.
        while True:
            if await try_sampler_lock(conn, SAMPLER_LOCK_KEY):
                break
            await asyncio.sleep(interval_s)
        await _sample_while_leading(settings, conn, interval_s)
    finally:
        with contextlib.suppress(*_EXPECTED):
            await conn.close(timeout=2)


async def _sample_while_leading(
    settings: Settings, conn: asyncpg.Connection, interval_s: float
) -> None:
    queues = queue_kinds(Topology(settings.namespace, settings.retry_delays))
    amqp = await aio_pika.connect(
        settings.amqp_url.get_secret_value(),
        client_properties={"connection_name": "hookline-metrics-sampler"},
        timeout=10,
    )
    try:
        BACKLOG.leader = True
        log.info("metrics_sampler_leading", queues=len(queues), interval_s=interval_s)
        channel = await amqp.channel()
        while True:
            samples, channel = await sample_queues(amqp, channel, queues)
            BACKLOG.update(samples, await database_sample(conn))
            await asyncio.sleep(interval_s)
    finally:
        # Only the leader touches the figures: a standby (another component of the same
        # process in tests) must not clear them.
        BACKLOG.reset()
        with contextlib.suppress(*_EXPECTED, *_EXPECTED_AMQP):
            await amqp.close()
