"""The backlog metrics on the real broker and Postgres, as a scrape of /metrics shows them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import aio_pika
import aiohttp
import asyncpg
from prometheus_client.parser import text_string_to_metric_families

from shared.amqp import declare
from shared.ops import Readiness
from shared.runtime import serve
from shared.sampler import SAMPLER_LOCK_KEY
from shared.settings import Settings
from shared.topology import Topology
from tests.support import AMQP_URL
from tests.support.sender import insert_delivery, insert_subscription

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(port: int) -> Samples:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/metrics") as answer:
            text = await answer.text()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def until(port: int, check: Callable[[Samples], bool]) -> Samples:
    """The first scrape for which `check` holds (the test's timeout bounds the wait)."""
    while True:
        try:
            samples = await scrape(port)
        except aiohttp.ClientConnectionError:
            samples = {}
        if check(samples):
            return samples
        await asyncio.sleep(0.05)


async def _hold(_: aio_pika.abc.AbstractIncomingMessage) -> None:
    """A consumer that takes nothing off the queue for good (never acks)."""


async def _idle(_: Settings, stop: asyncio.Event, readiness: Readiness) -> None:
    readiness.add("idle", lambda: True)
    await stop.wait()


@asynccontextmanager
async def sampling(settings: Settings) -> AsyncIterator[int]:
    """A service process (with its sampler, every 50 ms) running; yields its metrics port."""
    fast = settings.model_copy(update={"metrics_sample_interval": 0.05})
    stop = asyncio.Event()
    served = asyncio.create_task(serve(fast, "fanout", [("idle", _idle)], stop=stop))
    try:
        yield fast.metrics_port_for("fanout")
    finally:
        stop.set()
        assert await served == 0


@asynccontextmanager
async def declared_topology(settings: Settings) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        await declare(channel, *Topology(settings.namespace, settings.retry_delays).everything())
        yield channel
    finally:
        await connection.close()


async def test_a_queue_with_messages_and_no_consumer_shows_them_and_zero(
    settings: Settings,
) -> None:
    topology = Topology(settings.namespace, settings.retry_delays)
    ingest, deliveries = topology.ingest_queue.name, topology.deliveries_queue.name
    async with declared_topology(settings) as channel:
        for _ in range(7):
            message = aio_pika.Message(b'{"type": "invoice.paid", "data": {}}', delivery_mode=2)
            await channel.default_exchange.publish(message, routing_key=ingest)
        queue = await channel.get_queue(deliveries, ensure=False)
        await queue.consume(_hold)
        async with sampling(settings) as port:
            got = await until(
                port,
                lambda s: (
                    value(s, "hookline_queue_messages_ready", queue=ingest, kind="work") == 7
                    and value(s, "hookline_queue_consumers", queue=deliveries, kind="work") == 1
                ),
            )
    assert value(got, "hookline_queue_consumers", queue=ingest, kind="work") == 0
    assert value(got, "hookline_metrics_sampler_leader") == 1
    dead = topology.dead_queue.name
    assert value(got, "hookline_queue_messages_ready", queue=dead, kind="dead") == 0
    kinds = {
        dict(labels)["kind"] for name, labels in got if name == "hookline_queue_messages_ready"
    }
    assert kinds == {"work", "retry", "dead", "rejected"}


async def test_oldest_pending_age_grows_and_failing_and_parked_are_counted(
    settings: Settings,
) -> None:
    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    try:
        failing, _ = await insert_subscription(conn, "http://127.0.0.1:9/a")
        parked, _ = await insert_subscription(conn, "http://127.0.0.1:9/b")
        await insert_subscription(conn, "http://127.0.0.1:9/healthy")
        await conn.execute("UPDATE subscriptions SET failing_since = now() WHERE id = $1", failing)
        await conn.execute(
            "UPDATE subscriptions SET parked_until = now() + interval '1 hour' WHERE id = $1",
            parked,
        )
        message = await insert_delivery(conn, failing)
        await conn.execute(
            "UPDATE deliveries SET created_at = now() - interval '90 seconds' WHERE id = $1",
            message.delivery_id,
        )
        async with declared_topology(settings):
            async with sampling(settings) as port:
                first = await until(port, lambda s: _age(s) is not None)
                age = _age(first)
                assert age is not None and age >= 90
                later = await until(port, lambda s: (_age(s) or 0) > age)
        assert value(later, "hookline_subscriptions_failing") == 1
        assert value(later, "hookline_subscriptions_parked") == 1
    finally:
        await conn.close()


def _age(samples: Samples) -> float | None:
    return value(samples, "hookline_oldest_pending_delivery_age_seconds")


async def test_only_the_lock_holder_samples_and_a_standby_takes_over(settings: Settings) -> None:
    """Several replicas elect one sampler: while another session holds the lock this process
    shows no backlog series; once that session ends, it samples."""
    leader = await asyncpg.connect(settings.database_url.get_secret_value())
    released: Awaitable[None] | None = None
    try:
        assert await leader.fetchval("SELECT pg_try_advisory_lock($1)", SAMPLER_LOCK_KEY)
        async with declared_topology(settings):
            async with sampling(settings) as port:
                standby = await until(
                    port,
                    lambda s: (
                        value(s, "hookline_build_info", service="fanout", version="0.1.0") == 1
                    ),
                )
                await _standby_seen(settings, port)
                assert value(standby, "hookline_metrics_sampler_leader") == 0
                released = leader.close()
                await released
                await until(port, lambda s: value(s, "hookline_metrics_sampler_leader") == 1)
    finally:
        if released is None:
            await leader.close()


async def _standby_seen(settings: Settings, port: int) -> None:
    """Wait until the sampler's session tried the lock, then check it shows no backlog."""
    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    try:
        seen = 0
        while not seen:
            seen = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name ="
                " 'hookline-metrics-sampler' AND datname = current_database()"
            )
            await asyncio.sleep(0.05)
    finally:
        await conn.close()
    await asyncio.sleep(0.2)  # a few intervals in which it must not sample
    samples = await scrape(port)
    assert not any(name == "hookline_queue_messages_ready" for name, _ in samples)
    assert _age(samples) is None


async def test_queues_not_declared_yet_are_left_out_and_the_rest_is_sampled(
    settings: Settings,
) -> None:
    async with sampling(settings) as port:
        got = await until(port, lambda s: _age(s) is not None)
    assert _age(got) == 0
    assert not any(name == "hookline_queue_messages_ready" for name, _ in got)
    assert value(got, "hookline_metrics_sampler_leader") == 1


async def test_the_sampler_survives_losing_its_database_session(settings: Settings) -> None:
    """Its session killed (a failover, a restart), it reconnects, leads again and samples on;
    the process it runs in never notices."""
    admin = await asyncpg.connect(settings.database_url.get_secret_value())
    try:
        async with declared_topology(settings), sampling(settings) as port:
            await until(port, lambda s: value(s, "hookline_metrics_sampler_leader") == 1)
            killed_at = await admin.fetchval(
                "SELECT extract(epoch FROM now())::float8 FROM (SELECT pg_terminate_backend(pid)"
                " FROM pg_stat_activity WHERE application_name = 'hookline-metrics-sampler'"
                " AND datname = current_database()) AS killed"
            )
            assert killed_at is not None, "no sampler session to kill"
            await until(
                port,
                lambda s: (
                    (value(s, "hookline_metrics_sampled_timestamp_seconds") or 0) > killed_at + 0.5
                ),
            )
    finally:
        await admin.close()
