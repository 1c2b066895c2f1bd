"""The relay scenario: events through hookline_client, directly and through the outbox.

One Hookline deployment with one subscription. First `events` events go the direct way,
`AsyncNotifier.notify_many` in bursts (events/s confirmed). Then as many are committed in a
producer database, 100 rows to a transaction, while `hookline-outbox relay` runs: the
figure is events/s from the first commit to the last row marked published (each marked
only after its confirm), with the latency from insert to mark. Every event of both ways
must then be delivered once.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from dataclasses import dataclass

import asyncpg
from hookline_client import AsyncNotifier, Event, outbox
from hookline_client.outbox.sql import queries

from bench.procs import REPO_ROOT, Stack, die_with_parent, with_database
from bench.publisher import EVENT_TYPE
from bench.receiver import Receiver
from bench.scenarios import (
    API_TOKEN,
    SETTLE_S,
    Plan,
    ScenarioResult,
    _stored,
    create_subscriptions,
    wait_for_receipts,
)
from bench.stats import Receipt, analyse, percentile, rate_per_s
from shared.db import drop_database

BURST = 500
"""Events per `notify_many` call on the direct way."""
ROWS_PER_COMMIT = 100
RELAY_BATCH = 500


@dataclass
class _Outboxed:
    first_commit_at: float
    last_commit_at: float
    last_marked_at: float | None
    latencies_ms: list[float]


async def _direct(plan: Plan, namespace: str, events: int) -> tuple[float, float]:
    """Publish seqs 0..events-1 with notify_many; (started, last confirm) in Unix seconds."""
    async with AsyncNotifier(plan.amqp_url, namespace, timeout_s=60) as notifier:
        started = time.time()
        for first in range(0, events, BURST):
            now = time.time()
            burst = [
                Event(EVENT_TYPE, {"seq": seq, "sent_at": now}, id=f"{namespace}-{seq}")
                for seq in range(first, min(first + BURST, events))
            ]
            await notifier.notify_many(burst)
        return started, time.time()


async def _commit_rows(
    conn: asyncpg.Connection, namespace: str, seqs: range
) -> tuple[float, float]:
    """Commit one outbox row per seq, ROWS_PER_COMMIT to a transaction; (first, last) commit."""
    first_at = last_at = time.time()
    for start in range(seqs.start, seqs.stop, ROWS_PER_COMMIT):
        now = time.time()
        rows = [
            (EVENT_TYPE, json.dumps({"seq": seq, "sent_at": now}), f"{namespace}-{seq}", None)
            for seq in range(start, min(start + ROWS_PER_COMMIT, seqs.stop))
        ]
        async with conn.transaction():
            # One `hookline_outbox_notify` per row, as any driver would, pipelined.
            await conn.executemany(queries["notify"], rows)
        last_at = time.time()
        if start == seqs.start:
            first_at = now
    return first_at, last_at


async def _outboxed(producer_url: str, namespace: str, seqs: range) -> _Outboxed:
    conn = await asyncpg.connect(producer_url)
    try:
        first_at, last_at = await _commit_rows(conn, namespace, seqs)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            pending = await conn.fetchval(
                "SELECT count(*) FROM hookline_outbox WHERE published_at IS NULL"
            )
            if pending == 0:
                break
            await asyncio.sleep(0.1)
        row = await conn.fetchrow(
            "SELECT extract(epoch FROM max(published_at))::float8 AS last,"
            " array_agg(extract(epoch FROM published_at - created_at)::float8 * 1000) AS lat"
            " FROM hookline_outbox WHERE published_at IS NOT NULL"
        )
    finally:
        await conn.close()
    assert row is not None
    return _Outboxed(first_at, last_at, row["last"], sorted(row["lat"] or []))


async def _start_relay(
    producer_url: str, plan: Plan, namespace: str, log_name: str
) -> asyncio.subprocess.Process:
    with (plan.log_dir / log_name).open("wb") as log:
        return await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "hookline_client.outbox.cli", "relay"),
            *("--database-url", producer_url, "--amqp-url", plan.amqp_url),
            *("--namespace", namespace, "--batch-size", str(RELAY_BATCH)),
            cwd=REPO_ROOT,
            stdout=log,
            stderr=log,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )


async def _with_producer(
    plan: Plan, namespace: str, events: int
) -> tuple[tuple[float, float], _Outboxed]:
    """Both ways in turn, the relay running meanwhile in its own process."""
    producer_url = with_database(plan.admin_database_url, f"producer_{namespace}")
    admin = await asyncpg.connect(plan.admin_database_url)
    try:
        await admin.execute(f'CREATE DATABASE "producer_{namespace}"')
    finally:
        await admin.close()
    try:
        conn = await asyncpg.connect(producer_url)
        try:
            await outbox.migrate(conn)
        finally:
            await conn.close()
        relay = await _start_relay(producer_url, plan, namespace, f"{namespace}-relay.log")
        try:
            direct = await _direct(plan, namespace, events)
            outboxed = await _outboxed(producer_url, namespace, range(events, 2 * events))
        finally:
            relay.send_signal(signal.SIGTERM)
            await asyncio.wait_for(relay.wait(), 30)
        return direct, outboxed
    finally:
        await drop_database(producer_url)


async def run_relay(plan: Plan, receiver: Receiver) -> ScenarioResult:
    namespace = f"{plan.run_tag}_relay"
    events = plan.events
    stack = Stack(
        namespace=namespace,
        amqp_url=plan.amqp_url,
        admin_database_url=plan.admin_database_url,
        api_token=API_TOKEN,
        log_dir=plan.log_dir,
    )
    async with stack:
        await create_subscriptions(stack, [receiver.url(namespace, 0)])
        waiting = asyncio.create_task(wait_for_receipts(receiver, namespace, 2 * events, "relay"))
        try:
            direct, outboxed = await _with_producer(plan, namespace, events)
            await waiting
        finally:
            waiting.cancel()
        await asyncio.sleep(SETTLE_S)
        receipts = await receiver.collect(namespace)
        stored, last_stored = await _stored(stack, direct[0])
        stack.check_alive()
    result = _result(plan, events, receipts, direct, outboxed, stack)
    result.events_per_s_stored = rate_per_s(stored, direct[0], last_stored)
    return result


def _result(
    plan: Plan,
    events: int,
    receipts: list[Receipt],
    direct: tuple[float, float],
    outboxed: _Outboxed,
    stack: Stack,
) -> ScenarioResult:
    result = ScenarioResult(
        name="relay",
        events=2 * events,
        subscriptions=1,
        deliveries=analyse(receipts, range(1), range(2 * events)),
        events_per_s_confirmed=rate_per_s(events, *direct),
        events_per_s_relayed=rate_per_s(events, outboxed.first_commit_at, outboxed.last_marked_at),
        peak_rss_bytes=dict(stack.peak_rss),
        counters=dict(stack.counters),
    )
    committed = rate_per_s(events, outboxed.first_commit_at, outboxed.last_commit_at)
    lat = outboxed.latencies_ms
    result.notes += [
        f"{events} events by notify_many in bursts of {BURST} (events/s confirmed), then"
        f" {events} committed to the outbox {ROWS_PER_COMMIT} per transaction"
        f" (at {committed or 0:,.0f}/s) and relayed (events/s commit to confirm)",
        f"outbox insert to confirmed mark: p50 {percentile(lat, 50) or 0:.0f} ms,"
        f" p95 {percentile(lat, 95) or 0:.0f} ms, max {lat[-1] if lat else 0:.0f} ms",
        "one subscription; latency figures are publish/commit to webhook receipt",
    ]
    return result
