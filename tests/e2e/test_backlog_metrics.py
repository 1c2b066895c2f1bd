"""The backlog metrics of a real deployment: one process samples, and a stalled ingest shows."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp
import pytest

from tests.e2e.conftest import StackFactory
from tests.integration.test_sampler import Samples, scrape, value
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

LEADER = "hookline_metrics_sampler_leader"


async def scrape_all(stack: Stack) -> dict[str, Samples]:
    """Each running process's /metrics, by process name."""
    found = {}
    for name, proc in stack.procs.items():
        try:
            found[name] = await scrape(proc.metrics_port)
        except aiohttp.ClientConnectionError:
            found[name] = {}
    return found


async def leader_samples(stack: Stack, check: Callable[[Samples], bool]) -> tuple[str, Samples]:
    """The name and scrape of the leading process, once `check(samples)` holds for it."""
    while True:
        for name, samples in (await scrape_all(stack)).items():
            if value(samples, LEADER) == 1 and check(samples):
                return name, samples
        await asyncio.sleep(0.1)


async def test_one_process_samples_and_a_stopped_ingest_shows_as_a_filling_queue(
    stack_factory: StackFactory,
) -> None:
    stack = stack_factory(env={"HOOKLINE_METRICS_SAMPLE_INTERVAL": "200ms"})
    topology = stack.topology
    work = [topology.ingest_queue.name, topology.fanout_queue.name, topology.deliveries_queue.name]

    def all_consumed(samples: Samples) -> bool:
        return all(
            value(samples, "hookline_queue_consumers", queue=q, kind="work") == 1 for q in work
        )

    await leader_samples(stack, all_consumed)
    every = await scrape_all(stack)
    assert sorted(value(s, LEADER) for s in every.values()) == [0, 0, 1]
    assert {
        value(s, "hookline_build_info", service=n, version="0.1.0") for n, s in every.items()
    } == {1}

    # Ingest gone: whoever samples now (fanout or the sender) reports its queue filling up
    # with no consumer, which is what HooklineQueueWithoutConsumer fires on.
    assert stack.stop("ingest") == 0
    async with stack.publisher() as publisher:
        for i in range(5):
            await publisher.publish({"type": "invoice.paid", "data": {"n": i}})
    ingest = topology.ingest_queue.name

    def stalled(samples: Samples) -> bool:
        return (
            value(samples, "hookline_queue_messages_ready", queue=ingest, kind="work") == 5
            and value(samples, "hookline_queue_consumers", queue=ingest, kind="work") == 0
        )

    name, samples = await leader_samples(stack, stalled)
    assert name in ("fanout", "sender")
    fanout = topology.fanout_queue.name
    assert value(samples, "hookline_queue_consumers", queue=fanout, kind="work") == 1
