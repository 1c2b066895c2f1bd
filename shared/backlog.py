"""What waits where: queue depths and consumers from the broker, pending work from Postgres.

The broker is sampled here, Postgres by `shared/stores/ops.py` (`database_sample`).

Exported through `BACKLOG`, a collector of the metrics registry that shows the last sample of
the process that took it (`shared.sampler`, one process per deployment) and nothing in the
others: a panel or alert takes `max` over the series of all pods, and a stale zero of a
standby never hides the leader's figure. Label sets stay bounded: one series per queue of the
topology, never one per subscription.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from shared.metrics import REGISTRY
from shared.stores.ops import DatabaseSample
from shared.topology import Topology

WORK, RETRY, DEAD, REJECTED = "work", "retry", "dead", "rejected"


@dataclass(frozen=True)
class QueueSample:
    name: str
    kind: str
    """`work` (a service consumes it), `retry`, `dead` or `rejected` (none, by design)."""
    messages_ready: int
    consumers: int


def queue_kinds(topology: Topology) -> list[tuple[str, str]]:
    """(queue name, kind) of every queue of the topology, work queues first."""
    found = [
        (topology.ingest_queue.name, WORK),
        (topology.fanout_queue.name, WORK),
        (topology.deliveries_queue.name, WORK),
        *((q.name, RETRY) for q in topology.retry_queues),
        (topology.dead_queue.name, DEAD),
        (topology.rejected_queue.name, REJECTED),
        (topology.fanout_rejected_queue.name, REJECTED),
    ]
    _, every = topology.everything()
    assert {name for name, _ in found} == {q.name for q in every}, "a queue has no kind"
    return found


async def sample_queues(
    connection: AbstractConnection, channel: AbstractChannel, queues: list[tuple[str, str]]
) -> tuple[list[QueueSample], AbstractChannel]:
    """Depth and consumers of each queue by passive declare; returns the channel to use next.

    A queue that does not exist (not yet declared, deleted by hand) is left out; the broker
    closes the channel for it, so a new one is opened.
    """
    samples = []
    for name, kind in queues:
        try:
            queue = await channel.declare_queue(name, passive=True)
        except aio_pika.exceptions.ChannelClosed:
            # ChannelNotFoundEntity: the broker closed the channel; later queues need another.
            channel = await connection.channel()
            continue
        result = queue.declaration_result
        samples.append(
            QueueSample(name, kind, result.message_count or 0, result.consumer_count or 0)
        )
    return samples, channel


class BacklogCollector(Collector):
    """The last sample of this process, as gauges; families without samples when it has none."""

    def __init__(self) -> None:
        self.leader = False
        self._queues: list[QueueSample] = []
        self._database: DatabaseSample | None = None
        self._taken_at: float | None = None

    def update(self, queues: list[QueueSample], database: DatabaseSample) -> None:
        self._queues, self._database, self._taken_at = queues, database, time.time()

    def reset(self) -> None:
        """Show nothing: this process lost its lead, the broker or the database."""
        self.leader = False
        self._queues, self._database, self._taken_at = [], None, None

    def collect(self) -> Iterator[Metric]:
        ready = GaugeMetricFamily(
            "hookline_queue_messages_ready",
            "Messages ready in a queue of Hookline's topology (sampled by one process).",
            labels=["queue", "kind"],
        )
        consumers = GaugeMetricFamily(
            "hookline_queue_consumers",
            "Consumers of a queue of Hookline's topology (sampled by one process).",
            labels=["queue", "kind"],
        )
        for q in self._queues:
            ready.add_metric([q.name, q.kind], q.messages_ready)
            consumers.add_metric([q.name, q.kind], q.consumers)
        yield ready
        yield consumers
        yield from self._database_families()
        leader = GaugeMetricFamily(
            "hookline_metrics_sampler_leader",
            "1 in the one process that samples the backlog metrics, 0 in the others.",
        )
        leader.add_metric([], 1.0 if self.leader else 0.0)
        yield leader

    def _database_families(self) -> Iterator[Metric]:
        db, taken = self._database, self._taken_at
        families = [
            (
                "hookline_oldest_pending_delivery_age_seconds",
                "Age of the oldest delivery not yet attempted.",
                None if db is None else db.oldest_pending_age_s,
            ),
            (
                "hookline_subscriptions_failing",
                "Enabled subscriptions whose every attempt failed since their last success.",
                None if db is None else db.subscriptions_failing,
            ),
            (
                "hookline_subscriptions_parked",
                "Enabled subscriptions held back as stuck (parked_until in the future).",
                None if db is None else db.subscriptions_parked,
            ),
            (
                "hookline_metrics_sampled_timestamp_seconds",
                "When the backlog metrics were last sampled (Unix time).",
                taken,
            ),
        ]
        for name, documentation, value in families:
            family = GaugeMetricFamily(name, documentation)
            if value is not None:
                family.add_metric([], float(value))
            yield family


BACKLOG = BacklogCollector()
REGISTRY.register(BACKLOG)
