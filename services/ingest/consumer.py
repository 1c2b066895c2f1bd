"""The AMQP side of ingest: accept or reject each message of `{ns}.ingest`.

Consuming, acking, restoring after an outage and draining are `shared.consuming`'s. Every
message is acked only after what it caused is durable: the event stored and confirmed on
`{ns}.events`, or the message itself confirmed on `{ns}.ingest.rejected`. When Postgres or
RabbitMQ is unavailable `handle` raises, and the runtime holds the message and tries again
(pausing the consumer meanwhile): never dropped, never requeued for an outage.
aio-pika runs each delivery in its own task, so the channel's prefetch bounds the concurrency.
"""

from __future__ import annotations

from services.ingest.intake import Intake
from services.ingest.publisher import Publisher
from services.ingest.validation import check_catalogue, parse_event
from shared.consuming import Consumer, Gate
from shared.errors import BrokerUnavailable, IdempotencyConflict, InvalidEvent, StorageUnavailable
from shared.event_types import Catalogue
from shared.inbound import Inbound
from shared.logging import get_logger
from shared.metrics import EVENTS_REJECTED
from shared.models import EventIn
from shared.settings import Settings
from shared.topology import Queue

REASON_INTERNAL = "internal_error"

log = get_logger("ingest_consumer")


class IngestConsumer:
    """Consumes the ingest queue (through `shared.consuming.Consumer`) until `stop()`."""

    def __init__(
        self,
        settings: Settings,
        intake: Intake,
        publisher: Publisher,
        catalogue: Catalogue,
        queue: Queue,
        gate: Gate | None = None,
    ) -> None:
        self._settings = settings
        self._intake = intake
        self._publisher = publisher
        self._catalogue = catalogue
        self.consumer = Consumer(
            settings,
            "ingest-consume",
            queue,
            self.handle,
            prefetch=settings.ingest_prefetch,
            gate=gate,
        )

    async def start(self) -> None:
        await self.consumer.start()

    async def stop(self, grace_s: float) -> None:
        """Stop taking messages, let those in flight finish within `grace_s`, cancel the rest.

        A cancelled message is not acked, so the broker delivers it again.
        """
        await self.consumer.stop(grace_s)

    async def handle(self, message: Inbound) -> None:
        """Accept or reject one message; raises StorageUnavailable or BrokerUnavailable when
        it must be tried again (the runtime holds it meanwhile)."""
        try:
            await self._process(message)
        except (StorageUnavailable, BrokerUnavailable):
            raise
        except Exception:
            log.error("ingest_message_failed", message_id=message.message_id, exc_info=True)
            await self._reject(message, REASON_INTERNAL, "ingest failed on it")

    async def _process(self, message: Inbound) -> None:
        try:
            event = parse_event(message.body, self._settings.max_payload)
            check_catalogue(
                event, self._catalogue, require_known=self._settings.require_event_types
            )
        except InvalidEvent as exc:
            await self._reject(message, exc.reason, exc.message)
            return
        try:
            await self._accept(event)
        except IdempotencyConflict as exc:
            await self._reject(message, exc.reason, str(exc))

    async def _accept(self, event: EventIn) -> None:
        try:
            await self._intake.accept(event, "amqp")
        except (StorageUnavailable, BrokerUnavailable) as exc:
            log.warning("event_held", event_type=event.type, error=str(exc))
            raise

    async def _reject(self, message: Inbound, reason: str, error: str) -> None:
        headers = dict(message.headers or {})
        try:
            await self._publisher.reject(message.body, headers, reason=reason, error=error)
        except BrokerUnavailable as exc:
            log.warning("event_reject_failed", reason=reason, error=str(exc))
            raise
        EVENTS_REJECTED.labels(reason).inc()
        log.info(
            "event_rejected",
            message_id=message.message_id,
            routing_key=message.routing_key,
            reason=reason,
            error=error,
        )
