"""Every exchange, queue and binding of Hookline, written once as values (CONTRACT section 2, 4).

Names are prefixed by `HOOKLINE_NAMESPACE`. Each service declares what it uses through
`declare()`, which is idempotent. A retry queue is named by its delay (`{ns}.retry.5s`), so a
new schedule declares new queues beside the old ones instead of conflicting with their
arguments; old ones drain into the work queue and stay empty.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared.durations import format_duration

if TYPE_CHECKING:
    from shared.settings import Settings

SEND_ROUTING_KEY = "send"
QUEUE_TYPES = ("classic", "quorum")
DEFAULT_DELIVERY_LIMIT = 50
INSPECTED_DELIVERY_LIMIT = 1_000_000
"""The delivery limit of quorum queues only people read (RabbitMQ 3.x has no "unlimited")."""


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
    """The names and shapes of one namespace's broker objects.

    `queue_type` (`HOOKLINE_QUEUE_TYPE`) is the type of every queue. A classic queue is
    declared with the arguments Hookline always used (none beyond the retry queues' TTL and
    dead-letter exchange), so an existing deployment redeclares its queues unchanged. A
    quorum queue (docs/reliability.md) also gets:
    - the work queues (`{ns}.ingest`, `{ns}.fanout`, `{ns}.deliveries`): a delivery limit
      set on purpose (`delivery_limit`), and past it the message is dead-lettered, at least
      once, to the queue's rejected queue (the dead queue for deliveries), never dropped;
    - the retry queues: at-least-once dead-lettering back to the work queue when the TTL
      runs out (`x-overflow: reject-publish` is what RabbitMQ requires for it).
    """

    namespace: str
    retry_delays_s: tuple[float, ...]
    queue_type: str = "classic"
    delivery_limit: int = DEFAULT_DELIVERY_LIMIT

    def __post_init__(self) -> None:
        if self.queue_type not in QUEUE_TYPES:
            raise ValueError(f"queue type must be one of {QUEUE_TYPES}, not {self.queue_type!r}")

    @property
    def quorum(self) -> bool:
        return self.queue_type == "quorum"

    def _work_queue(
        self, name: str, overflow_to: str, bindings: tuple[tuple[str, str], ...]
    ) -> Queue:
        """A queue a service consumes; on quorum, what exceeds the delivery limit goes to
        `overflow_to` (through the default exchange)."""
        if not self.quorum:
            return Queue(name, bindings=bindings)
        return Queue(
            name,
            arguments={
                **_QUORUM,
                "x-delivery-limit": self.delivery_limit,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": overflow_to,
                **_AT_LEAST_ONCE,
            },
            bindings=bindings,
        )

    def _plain_queue(self, name: str) -> Queue:
        """A queue people inspect (the rejected and dead queues); on quorum its delivery
        limit is set far out of reach: `hookline dead list` takes and returns each message,
        and RabbitMQ 4's default limit (20) would drop a dead delivery after 20 listings."""
        if not self.quorum:
            return Queue(name)
        return Queue(name, arguments={**_QUORUM, "x-delivery-limit": INSPECTED_DELIVERY_LIMIT})

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
        return self._work_queue(
            f"{self.namespace}.ingest",
            self.rejected_queue.name,
            ((self.ingest_exchange.name, "#"),),
        )

    @property
    def rejected_queue(self) -> Queue:
        return self._plain_queue(f"{self.namespace}.ingest.rejected")

    @property
    def fanout_queue(self) -> Queue:
        return self._work_queue(
            f"{self.namespace}.fanout",
            self.fanout_rejected_queue.name,
            ((self.events_exchange.name, "#"),),
        )

    @property
    def fanout_rejected_queue(self) -> Queue:
        return self._plain_queue(f"{self.namespace}.fanout.rejected")

    @property
    def deliveries_queue(self) -> Queue:
        return self._work_queue(
            f"{self.namespace}.deliveries",
            self.dead_queue.name,
            ((self.deliveries_exchange.name, SEND_ROUTING_KEY),),
        )

    @property
    def dead_queue(self) -> Queue:
        return self._plain_queue(f"{self.namespace}.dead")

    def retry_queue(self, delay_s: float) -> Queue:
        """The queue where a delivery waits `delay_s` before going back to the work queue."""
        arguments: dict[str, Any] = {
            "x-message-ttl": round(delay_s * 1000),
            "x-dead-letter-exchange": self.deliveries_exchange.name,
            "x-dead-letter-routing-key": SEND_ROUTING_KEY,
        }
        if self.quorum:
            arguments.update(_QUORUM)
            arguments.update(_AT_LEAST_ONCE)
        return Queue(f"{self.namespace}.retry.{format_duration(delay_s)}", arguments=arguments)

    @property
    def retry_queues(self) -> tuple[Queue, ...]:
        return tuple(self.retry_queue(d) for d in sorted(set(self.retry_delays_s)))

    # What each service declares: the objects it consumes, and every queue it publishes
    # into. A publish is mandatory, so a queue that its consumer has not declared yet must
    # exist already: events published before fanout first starts wait in `{ns}.fanout`
    # instead of being unroutable, and so on down the path.
    def for_ingest(self) -> tuple[list[Exchange], list[Queue]]:
        """Its own queues, fanout's queue (events), the deliveries queue (the API's
        retries and test events)."""
        return (
            [self.ingest_exchange, self.events_exchange, self.deliveries_exchange],
            [self.ingest_queue, self.rejected_queue, self.fanout_queue, self.deliveries_queue],
        )

    def for_fanout(self) -> tuple[list[Exchange], list[Queue]]:
        """Its own queues, the deliveries queue, and the retry queues: deliveries to a
        parked target go straight to one (services/sender/park.py)."""
        return (
            [self.events_exchange, self.deliveries_exchange],
            [
                self.fanout_queue,
                self.fanout_rejected_queue,
                self.deliveries_queue,
                *self.retry_queues,
            ],
        )

    def for_sender(self) -> tuple[list[Exchange], list[Queue]]:
        """The deliveries queue, the dead queue and the retry queues."""
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


_QUORUM = {"x-queue-type": "quorum"}
_AT_LEAST_ONCE = {"x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"}


def topology_of(settings: Settings) -> Topology:
    """The topology a service declares, from its settings (namespace, delays, queue type)."""
    return Topology(
        settings.namespace,
        settings.retry_delays,
        settings.queue_type,
        settings.quorum_delivery_limit,
    )


def queue_names(queues: Iterable[Queue]) -> list[str]:
    return [q.name for q in queues]
