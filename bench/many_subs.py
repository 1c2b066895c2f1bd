"""The many-subscriptions scenario (issue 17): a million subscriptions, one per tenant.

The database is filled in bulk with COPY before any service starts (not through the API):
`subscriptions` subscriptions, one per tenant, each to its own receiver path; `deliveries`
past deliveries of `deliveries // DELIVERIES_PER_EVENT` past events. Then the three services
start (time to ready is measured), events are published each for one random tenant (so each
makes one delivery), and the API's reads are timed on that database. The same scenario with
10 subscriptions runs first, for the deliveries/s comparison.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import aiohttp
import asyncpg

from bench.procs import Stack
from bench.publisher import EVENT_TYPE, WARMUP_SEQ
from bench.receiver import Receiver
from bench.scenarios import API_TOKEN, SETTLE_S, Plan, ScenarioResult, _measure, _stored
from bench.stats import analyse_pairs, percentile, rate_per_s
from shared.signing import generate_secret

FEW = 10
DELIVERIES_PER_EVENT = 20
API_SAMPLES = 200
"""Requests timed per API read."""
SEED = 17


def tenant(index: int) -> str:
    return f"tenant-{index:07d}"


def sub_id(index: int) -> str:
    return f"sub_bench{index:07d}"


def delivery_id(index: int) -> str:
    return f"dlv_past{index:08d}"


@dataclass(frozen=True)
class Loaded:
    subscriptions: int
    deliveries: int
    seconds: float


async def load(database_url: str, urls: list[str], deliveries: int, rng: random.Random) -> Loaded:
    """COPY the subscriptions (one tenant each) and past events and deliveries, then ANALYZE."""
    started = time.monotonic()
    conn = await asyncpg.connect(database_url)
    try:
        # A bulk load by its owner: no NOTIFY per row (nobody listens yet), no FK checks
        # (every row is consistent by construction).
        await conn.execute("SET session_replication_role = replica")
        await conn.copy_records_to_table(
            "subscriptions",
            records=_subscriptions(urls),
            columns=["id", "url", "event_types", "tenant_id", "secret"],
        )
        events = max(1, deliveries // DELIVERIES_PER_EVENT) if deliveries else 0
        now = datetime.now(UTC)
        if events:
            await conn.copy_records_to_table(
                "events",
                records=_events(events, now),
                columns=["id", "type", "data", "source", "created_at", "dispatched_at"],
            )
            await conn.copy_records_to_table(
                "deliveries",
                records=_deliveries(deliveries, events, len(urls), now, rng),
                columns=["id", "event_id", "subscription_id", "status", "attempts", "created_at"],
            )
        await conn.execute("ANALYZE subscriptions; ANALYZE events; ANALYZE deliveries")
    finally:
        await conn.close()
    return Loaded(len(urls), deliveries, time.monotonic() - started)


def _subscriptions(urls: list[str]) -> Iterator[tuple[object, ...]]:
    for i, url in enumerate(urls):
        yield (sub_id(i), url, [EVENT_TYPE], tenant(i), generate_secret())


def _events(count: int, now: datetime) -> Iterator[tuple[object, ...]]:
    for i in range(count):
        at = now - timedelta(seconds=count - i)
        yield (f"evt_past{i:08d}", EVENT_TYPE, '{"past": true}', "amqp", at, at)


def _deliveries(
    count: int, events: int, subs: int, now: datetime, rng: random.Random
) -> Iterator[tuple[object, ...]]:
    for i in range(count):
        event = i // DELIVERIES_PER_EVENT
        at = now - timedelta(seconds=events - event)
        sub = sub_id(rng.randrange(subs))
        yield (delivery_id(i), f"evt_past{event:08d}", sub, "succeeded", 1, at)


async def time_api_reads(
    api_url: str, subs: int, deliveries: int, rng: random.Random
) -> dict[str, float | None]:
    """p99 in ms of each of the API's reads issue 17 names, on random rows."""
    headers = {"authorization": f"Bearer {API_TOKEN}"}
    reads: dict[str, Callable[[], str]] = {
        "GET /v1/subscriptions": lambda: "/v1/subscriptions",
        "GET /v1/subscriptions?tenant_id=": lambda: (
            f"/v1/subscriptions?tenant_id={tenant(rng.randrange(subs))}"
        ),
        "GET /v1/subscriptions/{id}/deliveries": lambda: (
            f"/v1/subscriptions/{sub_id(rng.randrange(subs))}/deliveries"
        ),
        "GET /v1/deliveries/{id}": lambda: (
            f"/v1/deliveries/{delivery_id(rng.randrange(deliveries))}"
        ),
    }
    out: dict[str, float | None] = {}
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(api_url, headers=headers, timeout=timeout) as http:
        for name, path in reads.items():
            took_ms: list[float] = []
            for _ in range(API_SAMPLES):
                started = time.perf_counter()
                async with http.get(path()) as answer:
                    await answer.read()
                    if answer.status != 200:
                        raise RuntimeError(f"{name} answered {answer.status}")
                took_ms.append((time.perf_counter() - started) * 1000)
            took_ms.sort()
            out[name] = percentile(took_ms, 99)
    return out


async def run_variant(
    plan: Plan, receiver: Receiver, name: str, subs: int, deliveries: int
) -> ScenarioResult:
    """One deployment: load, start (timed), publish for random tenants, time the API."""
    rng = random.Random(SEED)
    namespace = f"{plan.run_tag}_{name.replace('-', '_')}"
    sub_of_seq = [rng.randrange(subs) for _ in range(plan.events)]

    def tenant_of(seq: int) -> str:
        return tenant(0 if seq == WARMUP_SEQ else sub_of_seq[seq])

    urls = [receiver.url(namespace, i) for i in range(subs)]
    loaded: list[Loaded] = []

    async def prepare(database_url: str) -> None:
        loaded.append(await load(database_url, urls, deliveries, rng))

    stack = Stack(
        namespace=namespace,
        amqp_url=plan.amqp_url,
        admin_database_url=plan.admin_database_url,
        api_token=API_TOKEN,
        log_dir=plan.log_dir,
        prepare=prepare,
    )
    async with stack:
        measured = await _measure(
            plan, receiver, stack, name, plan.events, None, 1, tenant_of=tenant_of
        )
        await asyncio.sleep(SETTLE_S)
        receipts = await receiver.collect(namespace)
        stored, last_stored = await _stored(stack, measured.published.started_at)
        api = await time_api_reads(stack.api_url, subs, deliveries, rng) if deliveries else {}
        stack.check_alive()
    published = measured.published
    result = ScenarioResult(
        name=name,
        events=plan.events,
        subscriptions=subs,
        deliveries=analyse_pairs(receipts, sub_of_seq),
        events_per_s_confirmed=rate_per_s(
            plan.events, published.started_at, published.last_confirm_at
        ),
        events_per_s_stored=rate_per_s(stored, published.started_at, last_stored),
        peak_rss_bytes=dict(stack.peak_rss),
        counters=dict(stack.counters),
        ready_s=dict(stack.ready_s),
        api_p99_ms=api,
    )
    result.cpu_seconds, result.cpu_window_s = measured.cpu
    if loaded:
        result.notes.append(
            f"COPY of {loaded[0].subscriptions:,} subscriptions and {loaded[0].deliveries:,}"
            f" deliveries took {loaded[0].seconds:.0f}s"
        )
    result.notes.append(measured.watcher.summary())
    return result


async def run_many_subscriptions(plan: Plan, receiver: Receiver) -> ScenarioResult:
    """10 subscriptions first (the reference), then a million with 2 million deliveries."""
    few = await run_variant(plan, receiver, "many-subscriptions-10", FEW, 0)
    many = await run_variant(
        plan, receiver, "many-subscriptions", plan.many_subscriptions, plan.past_deliveries
    )
    many.baseline = few
    return many
