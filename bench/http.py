"""The http scenario: `POST /v1/events` from wrk for a while, then every accepted event awaited.

One subscription, so each accepted event is one delivery. wrk runs in its own process with
keep-alive connections; when it stops, the bench reads which events Hookline stored (that is
what "accepted" means, including requests wrk gave up on after the server took them) and
waits until each of them reached the receiver.
"""

from __future__ import annotations

import asyncio
import time

import asyncpg

from bench.loadgen import WrkResult, lua_script, parse_done_line, start_wrk, wrk_path
from bench.procs import CpuMeter, Stack
from bench.publisher import EVENT_TYPE, Publisher
from bench.receiver import Receiver
from bench.scenarios import (
    BACKGROUND_S,
    SETTLE_S,
    SHARED_SERVERS,
    Plan,
    ScenarioResult,
    create_subscriptions,
    new_stack,
    wait_for_receipts,
    warm_up,
)
from bench.stats import analyse_ids, rate_per_s
from bench.watch import QueueWatcher
from shared.topology import Topology

WRK_GRACE_S = 30.0
"""How long past its duration wrk may take to finish and print its summary."""


async def _accepted(stack: Stack) -> dict[str, float]:
    """Id -> stored-at (Unix seconds) of every event stored from HTTP (the warm-up event came
    over AMQP): what the load generator got accepted."""
    conn = await asyncpg.connect(stack.database_url)
    try:
        rows = await conn.fetch(
            "SELECT id, extract(epoch FROM created_at)::float8 AS at FROM events"
            " WHERE type = $1 AND source = 'http'",
            EVENT_TYPE,
        )
    finally:
        await conn.close()
    return {row["id"]: row["at"] for row in rows}


async def _run_wrk(plan: Plan, stack: Stack, tag: str) -> tuple[WrkResult, int | None]:
    """Run wrk to its end; its result and its pid (for the CPU meter, while it lived)."""
    script = plan.log_dir / f"{stack.namespace}-wrk.lua"
    script.write_text(lua_script(tag, stack.api_token, EVENT_TYPE))
    with (plan.log_dir / f"{stack.namespace}-wrk.log").open("wb") as log:
        proc = await start_wrk(
            stack.api_url,
            script,
            duration_s=plan.http_duration_s,
            connections=plan.http_connections,
            threads=plan.http_threads,
            log=log,
        )
    try:
        stdout, _ = await asyncio.wait_for(proc.communicate(), plan.http_duration_s + WRK_GRACE_S)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"wrk exited with {proc.returncode}")
    return parse_done_line(stdout.decode(errors="replace")), proc.pid


async def run_http(plan: Plan, receiver: Receiver) -> ScenarioResult:
    """Deploy with one subscription, load the API with wrk, await the deliveries, measure."""
    wrk_path()  # fail before deploying when wrk is missing
    stack = new_stack(plan, "http", ingest_processes=plan.ingest_processes)
    tag = f"{stack.namespace}-wrk"
    async with stack:
        await create_subscriptions(stack, [receiver.url(stack.namespace, 0)])
        exchange = Topology(stack.namespace, ()).ingest_exchange.name
        publisher = Publisher(plan.amqp_url, exchange, stack.namespace)
        await publisher.open()
        try:
            await warm_up(stack, receiver, publisher, 1)
        finally:
            await publisher.close()
        pids = {n: s.pid for n, s in stack.services.items()} | {"receiver": receiver.pid}
        meter = CpuMeter(pids, SHARED_SERVERS)
        background = await meter.background(BACKGROUND_S)
        meter.start()
        watcher = QueueWatcher(plan.amqp_url, stack.namespace)
        watcher.start()
        started_at = time.time()
        try:
            load, _ = await _run_wrk(plan, stack, tag)
            accepted = await _accepted(stack)
            await wait_for_receipts(receiver, stack.namespace, len(accepted), "http")
        finally:
            await watcher.stop()
        cpu = meter.stop()
        await asyncio.sleep(SETTLE_S)
        receipts = await receiver.collect(stack.namespace)
        stack.check_alive()
    result = ScenarioResult(
        name="http",
        events=len(accepted),
        subscriptions=1,
        deliveries=analyse_ids(receipts, accepted),
        events_per_s_stored=rate_per_s(
            len(accepted), started_at, max(accepted.values(), default=None)
        ),
        peak_rss_bytes=dict(stack.peak_rss),
        counters=dict(stack.counters),
        load=load,
    )
    result.cpu_seconds, result.cpu_window_s = cpu
    result.cpu_background_per_s = background
    result.queue_depths = watcher.samples
    result.notes.append(
        f"wrk: {load.requests} requests in {load.duration_s:.1f}s over"
        f" {plan.http_connections} connections, {load.status_errors} answered >= 400,"
        f" {load.socket_errors} socket errors, {load.timeouts} timeouts;"
        f" {len(accepted)} events stored; {plan.ingest_processes} ingest process(es)"
    )
    result.notes.append(watcher.summary())
    return result
