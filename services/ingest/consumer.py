"""The AMQP side of ingest: consume `{ns}.ingest`, accept or reject each message, then ack.

Every message ends acked only after what it caused is durable: the event stored and
confirmed on `{ns}.events`, or the message itself confirmed on `{ns}.ingest.rejected`; the
acks of many messages then share one frame (`shared.acks.BatchAcker`). When
Postgres or RabbitMQ is unavailable the message is requeued after a short pause, never dropped.
aio-pika runs each delivery in its own task, so the channel's prefetch bounds the concurrency.
"""

from __future__ import annotations

import asyncio
import contextlib

from aio_pika.abc import AbstractIncomingMessage, AbstractQueue

from services.ingest.intake import Intake
from services.ingest.publisher import Publisher
from services.ingest.validation import check_catalogue, parse_event
from shared.acks import BatchAcker
from shared.errors import (
    BrokerUnavailable,
    IdempotencyConflict,
    InvalidEvent,
    StorageUnavailable,
)
from shared.event_types import Catalogue
from shared.logging import get_logger
from shared.metrics import EVENTS_REJECTED
from shared.models import EventIn
from shared.runtime import drain_tasks
from shared.settings import Settings

REQUEUE_PAUSE_S = 1.0
"""Pause before requeueing when a dependency is down, so a broken database is not hammered."""
REASON_INTERNAL = "internal_error"

log = get_logger("ingest_consumer")


class IngestConsumer:
    """Consumes the ingest queue until `stop()`."""

    def __init__(
        self,
        settings: Settings,
        intake: Intake,
        publisher: Publisher,
        catalogue: Catalogue,
        acker: BatchAcker,
    ) -> None:
        self._settings = settings
        self._acker = acker
        self._intake = intake
        self._publisher = publisher
        self._catalogue = catalogue
        self._queue: AbstractQueue | None = None
        self._tag: str | None = None
        self._inflight: set[asyncio.Task[object]] = set()

    async def start(self, queue: AbstractQueue) -> None:
        self._queue = queue
        self._tag = await queue.consume(self._on_message)

    async def stop(self, grace_s: float) -> None:
        """Stop taking messages, let those in flight finish within `grace_s`, cancel the rest.

        A cancelled message is not acked, so the broker delivers it again.
        """
        if self._queue is not None and self._tag is not None:
            with contextlib.suppress(Exception):
                await self._queue.cancel(self._tag)
        cancelled = await drain_tasks(self._inflight, grace_s)
        if cancelled:
            log.warning("ingest_drain_timed_out", cancelled=cancelled)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        # Before anything awaits, so tickets are taken in consume order.
        ticket = self._acker.received(message)
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
        try:
            done = await self._process(message)
        except Exception:
            log.error("ingest_message_failed", message_id=message.message_id, exc_info=True)
            done = await self._reject_safely(message, REASON_INTERNAL, "ingest failed on it")
        if done:
            self._acker.finish(ticket)  # acked within a tick, with its neighbours
            return
        await asyncio.sleep(REQUEUE_PAUSE_S)
        try:
            await message.nack(requeue=True)
            # Only once the nack went out: a tag still unsettled at the broker must keep
            # blocking multiple acks rather than be acked unprocessed.
            self._acker.forget(ticket)
        except Exception as exc:
            # The channel is gone: the broker redelivers the message, and the idempotency
            # key (or the rejected copy's reason) keeps that honest.
            log.warning("ingest_settle_failed", acked=False, error=str(exc))

    async def _process(self, message: AbstractIncomingMessage) -> bool:
        """True when the message may be acked; False to requeue it."""
        try:
            event = parse_event(message.body, self._settings.max_payload)
            check_catalogue(
                event, self._catalogue, require_known=self._settings.require_event_types
            )
            return await self._accept(event)
        except InvalidEvent as exc:
            return await self._reject_safely(message, exc.reason, exc.message)
        except IdempotencyConflict as exc:
            return await self._reject_safely(message, exc.reason, str(exc))

    async def _accept(self, event: EventIn) -> bool:
        """False to requeue; raises IdempotencyConflict for the rejected queue."""
        try:
            await self._intake.accept(event, "amqp")
        except (StorageUnavailable, BrokerUnavailable) as exc:
            log.warning("event_requeued", event_type=event.type, error=str(exc))
            return False
        return True

    async def _reject_safely(
        self, message: AbstractIncomingMessage, reason: str, error: str
    ) -> bool:
        headers = dict(message.headers or {})
        try:
            await self._publisher.reject(message.body, headers, reason=reason, error=error)
        except BrokerUnavailable as exc:
            log.warning("event_reject_failed", reason=reason, error=str(exc))
            return False
        EVENTS_REJECTED.labels(reason).inc()
        log.info(
            "event_rejected",
            message_id=message.message_id,
            routing_key=message.routing_key,
            reason=reason,
            error=error,
        )
        return True
