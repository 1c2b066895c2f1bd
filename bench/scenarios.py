"""The scenarios: fanout, steady, noisy (one hanging receiver), ceiling, the same with one
subscription per event (fanout-1, steady-1, and http in `bench.http`), many-subscriptions.

Each Hookline scenario gets its own deployment (namespace, database, three processes), so
no scenario's retries or caches leak into the next one; the receiver is shared and tells
scenarios apart by the tag in the URL path.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
from tqdm import tqdm

from bench.ceiling import ceiling_queue_name, start_ceiling
from bench.loadgen import WrkResult
from bench.procs import CpuMeter, Stack, delete_namespace, peak_rss
from bench.publisher import EVENT_TYPE, WARMUP_SEQ, Publisher, PublishResult, event_body
from bench.receiver import Receiver
from bench.stats import DeliveryStats, Receipt, analyse, rate_per_s
from bench.watch import QueueWatcher
from shared.topology import Topology

API_TOKEN = "bench-token-0123456789abcdef"
NOISY_DELIVERY_TIMEOUT = "5s"
"""The delivery timeout of the noisy run: the hanging receiver holds each attempt this long."""
WARMUP_TIMEOUT_S = 60.0
STALL_TIMEOUT_S = 30.0
"""Waiting for deliveries ends when none arrived for this long."""
SETTLE_S = 1.0
"""Extra wait after the last expected delivery, so late duplicates are counted too."""
POLL_S = 0.25
SHARED_SERVERS = {"rabbitmq": "beam.smp", "postgres": "postgres"}
BACKGROUND_S = 3.0
"""How long the shared servers' background load is measured before a scenario publishes."""
"""Servers whose CPU is measured too; other users of the same servers count in it."""


@dataclass(frozen=True)
class Plan:
    """What one bench run does, from the command line."""

    events: int
    subscriptions: int
    rate: float
    """Deliveries per second in the steady scenario."""
    duration_s: float
    amqp_url: str
    admin_database_url: str
    run_tag: str
    log_dir: Path
    many_subscriptions: int = 1_000_000
    """Subscriptions (one tenant each) of the many-subscriptions scenario."""
    past_deliveries: int = 2_000_000
    """Deliveries bulk loaded beside them, for timing the API's reads."""
    single_events: int = 10_000
    """Events of fanout-1 (each to one subscription)."""
    http_duration_s: float = 20.0
    http_connections: int = 32
    http_threads: int = 2
    ingest_processes: int = 1
    """Ingest processes of the http scenario, sharing its port (SO_REUSEPORT)."""
    extra_env: dict[str, str] = field(default_factory=dict)
    """Added to every service's environment (`--env NAME=VALUE`)."""


@dataclass
class ScenarioResult:
    name: str
    events: int
    subscriptions: int
    deliveries: DeliveryStats
    healthy: DeliveryStats | None = None
    """Subscriptions 1..S-1 only: the noisy run's healthy ones, and the same set in fanout."""
    events_per_s_confirmed: float | None = None
    events_per_s_stored: float | None = None
    events_per_s_relayed: float | None = None
    """The relay scenario: outbox rows from the first commit to the last confirmed mark."""
    peak_rss_bytes: dict[str, int | None] = field(default_factory=dict)
    cpu_seconds: dict[str, float | None] = field(default_factory=dict)
    """CPU seconds of each process from publish start to the last receipt."""
    cpu_window_s: float = 0.0
    cpu_background_per_s: dict[str, float] = field(default_factory=dict)
    """CPU seconds per second the shared servers used just before, with nothing sent: the
    other users of the same RabbitMQ and Postgres (subtracted in the net figure)."""
    counters: dict[str, dict[str, float]] = field(default_factory=dict)
    """Each service's `hookline_*_total` counters at the end of the scenario."""
    queue_depths: list[tuple[float, dict[str, int]]] = field(default_factory=list)
    """(Unix time, ready messages by stage) once a second while the scenario ran."""
    notes: list[str] = field(default_factory=list)
    ready_s: dict[str, float] = field(default_factory=dict)
    """Seconds from each service's start to its first `/readyz` 200 (many-subscriptions)."""
    api_p99_ms: dict[str, float | None] = field(default_factory=dict)
    """p99 of each API read on the scenario's database (many-subscriptions)."""
    baseline: ScenarioResult | None = None
    """The same scenario with few subscriptions, for comparison (many-subscriptions)."""
    storage_bytes_per_delivery: float | None = None
    """Growth of the Postgres database over the scenario / deliveries stored meanwhile."""
    payload_bytes: int | None = None
    """Size of one bench event's envelope as published."""
    load: WrkResult | None = None
    """The http scenario's requests as wrk saw them."""


def _bar(desc: str, total: int, unit: str, position: int) -> tqdm[Any]:
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        position=position,
        leave=False,
        mininterval=0.5,
        dynamic_ncols=True,
    )


async def wait_for_receipts(receiver: Receiver, tag: str, expected: int, desc: str) -> int:
    """Poll the receiver until `expected` receipts of `tag` arrived or they stall; the count."""
    with _bar(f"{desc} delivered", expected, "dlv", 1) as bar:
        count = 0
        last_progress = time.monotonic()
        deadline = last_progress + STALL_TIMEOUT_S + expected / 50
        while time.monotonic() < deadline:
            now_count = await receiver.received(tag)
            bar.update(now_count - count)
            if now_count != count:
                count, last_progress = now_count, time.monotonic()
            if count >= expected or time.monotonic() - last_progress > STALL_TIMEOUT_S:
                break
            await asyncio.sleep(POLL_S)
    return count


async def create_subscriptions(stack: Stack, urls: list[str]) -> None:
    headers = {"authorization": f"Bearer {stack.api_token}"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        for url in urls:
            body = {"url": url, "event_types": [EVENT_TYPE], "description": "bench"}
            async with session.post(
                f"{stack.api_url}/v1/subscriptions", json=body, headers=headers
            ) as resp:
                if resp.status != 201:
                    text = (await resp.text())[:500]
                    raise RuntimeError(f"creating a subscription answered {resp.status}: {text}")


async def _stored(stack: Stack, since: float) -> tuple[int, float | None]:
    """Bench events stored since `since`, and when the last one was stored (Unix seconds)."""
    conn = await asyncpg.connect(stack.database_url)
    try:
        row = await conn.fetchrow(
            "SELECT count(*) AS n, extract(epoch FROM max(created_at))::float8 AS last"
            " FROM events WHERE type = $1 AND created_at >= to_timestamp($2)",
            EVENT_TYPE,
            since,
        )
    finally:
        await conn.close()
    assert row is not None
    return int(row["n"]), row["last"]


async def _storage(stack: Stack) -> tuple[int, int]:
    """(bytes of the database, deliveries stored) now."""
    conn = await asyncpg.connect(stack.database_url)
    try:
        row = await conn.fetchrow(
            "SELECT pg_database_size(current_database()) AS bytes,"
            " (SELECT count(*) FROM deliveries) AS deliveries"
        )
    finally:
        await conn.close()
    assert row is not None
    return int(row["bytes"]), int(row["deliveries"])


def _fmt_bytes(value: float | None) -> str:
    return "?" if value is None else f"{value:,.0f} B"


def _per_delivery(before: tuple[int, int], after: tuple[int, int]) -> float | None:
    stored = after[1] - before[1]
    return (after[0] - before[0]) / stored if stored > 0 else None


async def warm_up(stack: Stack, receiver: Receiver, publisher: Publisher, healthy: int) -> None:
    """One event through the whole path: subscriptions are loaded, connections are open."""
    await publisher.publish_one(WARMUP_SEQ)
    deadline = time.monotonic() + WARMUP_TIMEOUT_S
    while await receiver.received(stack.namespace) < healthy:
        stack.check_alive()
        if time.monotonic() > deadline:
            raise RuntimeError("the warm-up event was not delivered to every subscription")
        await asyncio.sleep(POLL_S)
    await receiver.collect(stack.namespace)


async def _publish_with_bar(
    publisher: Publisher, count: int, events_per_s: float | None, desc: str
) -> PublishResult:
    with _bar(f"{desc} published", count, "ev", 0) as bar:
        return await publisher.publish(
            count, events_per_s=events_per_s, on_confirm=lambda: bar.update()
        )


@dataclass
class _Measured:
    published: PublishResult
    cpu: tuple[dict[str, float | None], float]
    watcher: QueueWatcher
    background: dict[str, float]


async def _measure(
    plan: Plan,
    receiver: Receiver,
    stack: Stack,
    name: str,
    events: int,
    events_per_s: float | None,
    healthy: int,
    tenant_of: Callable[[int], str | None] | None = None,
) -> _Measured:
    """Warm up, then publish while watching CPU and queues, until every delivery arrived.

    `healthy` is how many deliveries each event makes (the warm-up's included)."""
    namespace = stack.namespace
    exchange = Topology(namespace, ()).ingest_exchange.name
    publisher = Publisher(plan.amqp_url, exchange, namespace, tenant_of)
    await publisher.open()
    try:
        await warm_up(stack, receiver, publisher, healthy)
        pids = {n: s.pid for n, s in stack.services.items()} | {"receiver": receiver.pid}
        meter = CpuMeter(pids, SHARED_SERVERS)
        background = await meter.background(BACKGROUND_S)
        meter.start()
        watcher = QueueWatcher(plan.amqp_url, namespace)
        watcher.start()
        waiting = asyncio.create_task(
            wait_for_receipts(receiver, namespace, events * healthy, name)
        )
        try:
            published = await _publish_with_bar(publisher, events, events_per_s, name)
            await waiting
        finally:
            waiting.cancel()
            await watcher.stop()
        return _Measured(published, meter.stop(), watcher, background)
    finally:
        await publisher.close()


async def run_hookline(
    plan: Plan,
    receiver: Receiver,
    name: str,
    *,
    events: int,
    events_per_s: float | None,
    hanging: bool = False,
    extra_env: dict[str, str] | None = None,
) -> ScenarioResult:
    """Deploy, subscribe, warm up, publish `events`, wait for every delivery, and measure."""
    subs = plan.subscriptions
    healthy_subs = range(1, subs) if hanging else range(subs)
    stack = new_stack(plan, name, extra_env)
    namespace = stack.namespace
    async with stack:
        urls = [receiver.url(namespace, i, hanging=hanging and i == 0) for i in range(subs)]
        await create_subscriptions(stack, urls)
        storage_before = await _storage(stack)
        measured = await _measure(
            plan, receiver, stack, name, events, events_per_s, len(healthy_subs)
        )
        await asyncio.sleep(SETTLE_S)
        receipts = await receiver.collect(namespace)
        stored, last_stored = await _stored(stack, measured.published.started_at)
        storage_after = await _storage(stack)
        stack.check_alive()
    result = _result(
        name, plan, events, receipts, healthy_subs, measured.published, stored, last_stored, stack
    )
    result.cpu_seconds, result.cpu_window_s = measured.cpu
    result.storage_bytes_per_delivery = _per_delivery(storage_before, storage_after)
    result.payload_bytes = len(event_body(namespace, events, time.time()))
    result.notes.append(
        f"storage: {_fmt_bytes(result.storage_bytes_per_delivery)} of Postgres per delivery,"
        f" events of {result.payload_bytes} bytes, {plan.subscriptions} subscriptions each"
    )
    result.cpu_background_per_s = measured.background
    result.notes.append(measured.watcher.summary())
    result.queue_depths = measured.watcher.samples
    return result


def new_stack(
    plan: Plan, name: str, extra_env: dict[str, str] | None = None, ingest_processes: int = 1
) -> Stack:
    """The deployment of scenario `name`: namespace `<run tag>_<name>` (`-` becomes `_`)."""
    return Stack(
        ingest_processes=ingest_processes,
        namespace=f"{plan.run_tag}_{name.replace('-', '_')}",
        amqp_url=plan.amqp_url,
        admin_database_url=plan.admin_database_url,
        api_token=API_TOKEN,
        log_dir=plan.log_dir,
        extra_env={**plan.extra_env, **(extra_env or {})},
    )


def _result(
    name: str,
    plan: Plan,
    events: int,
    receipts: list[Receipt],
    healthy_subs: range,
    published: PublishResult,
    stored: int,
    last_stored: float | None,
    stack: Stack,
) -> ScenarioResult:
    seqs = range(events)
    result = ScenarioResult(
        name=name,
        events=events,
        subscriptions=plan.subscriptions,
        deliveries=analyse(receipts, healthy_subs, seqs),
        healthy=analyse(receipts, range(1, plan.subscriptions), seqs),
        events_per_s_confirmed=rate_per_s(events, published.started_at, published.last_confirm_at),
        events_per_s_stored=rate_per_s(stored, published.started_at, last_stored),
        peak_rss_bytes=dict(stack.peak_rss),
        counters=dict(stack.counters),
    )
    deferred = stack.counters.get("sender", {}).get("hookline_deliveries_deferred_total", 0.0)
    if deferred:
        result.notes.append(f"the sender deferred {deferred:.0f} deliveries (target at its cap)")
    if stored != events:
        result.notes.append(f"{stored} of {events} events found stored")
    bad_exits = {k: v for k, v in stack.exit_codes.items() if v != 0}
    if bad_exits:
        result.notes.append(f"services exited with {bad_exits} on SIGTERM")
    return result


async def run_fanout(plan: Plan, receiver: Receiver) -> ScenarioResult:
    return await run_hookline(plan, receiver, "fanout", events=plan.events, events_per_s=None)


async def run_fanout_single(plan: Plan, receiver: Receiver) -> ScenarioResult:
    """fanout-1: `single_events` events, each to one subscription, as fast as they go."""
    single = replace(plan, subscriptions=1)
    return await run_hookline(
        single, receiver, "fanout-1", events=plan.single_events, events_per_s=None
    )


async def run_steady(plan: Plan, receiver: Receiver, name: str = "steady") -> ScenarioResult:
    events_per_s = plan.rate / plan.subscriptions
    events = max(1, round(events_per_s * plan.duration_s))
    return await run_hookline(plan, receiver, name, events=events, events_per_s=events_per_s)


async def run_steady_single(plan: Plan, receiver: Receiver) -> ScenarioResult:
    """steady-1: `rate` events/s, each to one subscription, for `duration_s`."""
    return await run_steady(replace(plan, subscriptions=1), receiver, "steady-1")


async def run_noisy(plan: Plan, receiver: Receiver) -> ScenarioResult:
    result = await run_hookline(
        plan,
        receiver,
        "noisy",
        events=plan.events,
        events_per_s=None,
        hanging=True,
        extra_env={"HOOKLINE_DELIVERY_TIMEOUT": NOISY_DELIVERY_TIMEOUT},
    )
    result.notes.append(f"subscription 0 hangs; HOOKLINE_DELIVERY_TIMEOUT={NOISY_DELIVERY_TIMEOUT}")
    return result


async def _await_ceiling(
    proc: asyncio.subprocess.Process, waiting: asyncio.Task[int], meter: CpuMeter
) -> tuple[bytes, int | None, tuple[dict[str, float | None], float]]:
    """Wait for the receipts and the process; its stdout, peak RSS and CPU use."""
    rss: int | None = None
    while not waiting.done():
        rss = max(rss or 0, peak_rss(proc.pid) or 0) or rss
        meter.sample()
        await asyncio.wait({waiting}, timeout=POLL_S)
    cpu = meter.stop()
    await waiting
    stdout, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    return stdout, rss, cpu


async def run_ceiling(plan: Plan, receiver: Receiver) -> ScenarioResult:
    """The minimal consume-POST-ack process draining events x subscriptions messages."""
    namespace = f"{plan.run_tag}_ceiling"
    count = plan.events * plan.subscriptions
    target = receiver.url(namespace, 0).rsplit("/", 1)[0]
    with (plan.log_dir / f"{namespace}.log").open("wb") as log:
        proc = await start_ceiling(plan.amqp_url, namespace, count, plan.subscriptions, target, log)
    waiting = asyncio.create_task(wait_for_receipts(receiver, namespace, count, "ceiling"))
    meter = CpuMeter({"ceiling": proc.pid, "receiver": receiver.pid}, SHARED_SERVERS)
    meter.start()
    try:
        stdout, rss, cpu = await _await_ceiling(proc, waiting, meter)
    finally:
        waiting.cancel()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await delete_namespace(plan.amqp_url, namespace, (ceiling_queue_name(namespace),))
    await asyncio.sleep(SETTLE_S)
    receipts = await receiver.collect(namespace)
    result = ScenarioResult(
        name="ceiling",
        events=plan.events,
        subscriptions=plan.subscriptions,
        deliveries=analyse(receipts, range(plan.subscriptions), range(plan.events)),
        peak_rss_bytes={"ceiling": rss},
        cpu_seconds=cpu[0],
        cpu_window_s=cpu[1],
    )
    if proc.returncode != 0:
        result.notes.append(f"the ceiling process exited with {proc.returncode}")
    else:
        timings = orjson.loads(stdout.splitlines()[-1])
        result.notes.append(
            f"filled in {timings['fill_s']:.1f}s, drained in {timings['drain_s']:.1f}s"
        )
    return result


async def run_many_subscriptions(plan: Plan, receiver: Receiver) -> ScenarioResult:
    from bench.many_subs import run_many_subscriptions as run  # it builds on this module

    return await run(plan, receiver)


async def run_relay(plan: Plan, receiver: Receiver) -> ScenarioResult:
    from bench.relay import run_relay as run  # bench.relay builds on this module

    return await run(plan, receiver)


SCENARIOS = {
    "fanout": run_fanout,
    "fanout-1": run_fanout_single,
    "steady": run_steady,
    "steady-1": run_steady_single,
    "noisy": run_noisy,
    "ceiling": run_ceiling,
    "many-subscriptions": run_many_subscriptions,
    "relay": run_relay,
}
"""The AMQP scenarios; `bench.http` adds http, and `bench.cli` runs them in this order."""
