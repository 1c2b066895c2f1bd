"""Every exchange, queue and binding of Hookline, written once as values (CONTRACT section 2, 4).

Names are prefixed by `HOOKLINE_NAMESPACE`. Each service declares what it uses through
`declare()`, which is idempotent. A retry queue is named by its delay (`{ns}.retry.5s`), so a
new schedule declares new queues beside the old ones instead of conflicting with their
arguments; old ones drain into the work queue and stay empty.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from shared.durations import format_duration

SEND_ROUTING_KEY = "send"


@dataclass(frozen=True)
class Exchange:
    name: str
    type: str = "topic"


@dataclass(frozen=True)
class Queue:
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    bindings: tuple[tuple[str, str], ...] = ()
    """(exchange name, routing key) pairs."""


@dataclass(frozen=True)
class Topology:
    """The names and shapes of one namespace's broker objects."""

    namespace: str
    retry_delays_s: tuple[float, ...]

    # Exchanges
    @property
    def ingest_exchange(self) -> Exchange:
        return Exchange(f"{self.namespace}.ingest", "topic")

    @property
    def events_exchange(self) -> Exchange:
        return Exchange(f"{self.namespace}.events", "topic")

    @property
    def deliveries_exchange(self) -> Exchange:
        return Exchange(f"{self.namespace}.deliveries", "direct")

    # Queues
    @property
    def ingest_queue(self) -> Queue:
        return Queue(f"{self.namespace}.ingest", bindings=((self.ingest_exchange.name, "#"),))

    @property
    def rejected_queue(self) -> Queue:
        return Queue(f"{self.namespace}.ingest.rejected")

    @property
    def fanout_queue(self) -> Queue:
        return Queue(f"{self.namespace}.fanout", bindings=((self.events_exchange.name, "#"),))

    @property
    def fanout_rejected_queue(self) -> Queue:
        return Queue(f"{self.namespace}.fanout.rejected")

    @property
    def deliveries_queue(self) -> Queue:
        return Queue(
            f"{self.namespace}.deliveries",
            bindings=((self.deliveries_exchange.name, SEND_ROUTING_KEY),),
        )

    @property
    def dead_queue(self) -> Queue:
        return Queue(f"{self.namespace}.dead")

    def retry_queue(self, delay_s: float) -> Queue:
        """The queue where a delivery waits `delay_s` before going back to the work queue."""
        return Queue(
            f"{self.namespace}.retry.{format_duration(delay_s)}",
            arguments={
                "x-message-ttl": round(delay_s * 1000),
                "x-dead-letter-exchange": self.deliveries_exchange.name,
                "x-dead-letter-routing-key": SEND_ROUTING_KEY,
            },
        )

    @property
    def retry_queues(self) -> tuple[Queue, ...]:
        return tuple(self.retry_queue(d) for d in sorted(set(self.retry_delays_s)))

    # What each service declares
    def for_ingest(self) -> tuple[list[Exchange], list[Queue]]:
        return (
            [self.ingest_exchange, self.events_exchange],
            [self.ingest_queue, self.rejected_queue],
        )

    def for_fanout(self) -> tuple[list[Exchange], list[Queue]]:
        return (
            [self.events_exchange, self.deliveries_exchange],
            [self.fanout_queue, self.fanout_rejected_queue, self.deliveries_queue],
        )

    def for_sender(self) -> tuple[list[Exchange], list[Queue]]:
        return (
            [self.deliveries_exchange],
            [self.deliveries_queue, self.dead_queue, *self.retry_queues],
        )

    def everything(self) -> tuple[list[Exchange], list[Queue]]:
        exchanges: dict[str, Exchange] = {}
        queues: dict[str, Queue] = {}
        for part in (self.for_ingest(), self.for_fanout(), self.for_sender()):
            exchanges.update((e.name, e) for e in part[0])
            queues.update((q.name, q) for q in part[1])
        return list(exchanges.values()), list(queues.values())


def queue_names(queues: Iterable[Queue]) -> list[str]:
    return [q.name for q in queues]
