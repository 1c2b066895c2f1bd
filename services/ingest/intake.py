"""Accepting a valid event: store it once, publish it to fanout, remember it was published.

Shared by the AMQP consumer and `POST /v1/events`, so both keep the same guarantees: an event
is stored before it is published, published (confirmed) before the caller hears "accepted",
and an idempotency key already dispatched is never published again. A key stored but never
dispatched (a crash between store and publish) is published again on its next arrival.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import asyncpg

from services.ingest.publisher import Publisher
from services.ingest.store import events as event_store
from services.ingest.store.events import StoredEvent
from shared.batching import BatchWriter, WriterClosed
from shared.errors import StorageUnavailable
from shared.ids import new_id
from shared.logging import get_logger
from shared.metrics import EVENTS_DUPLICATE, EVENTS_INGESTED
from shared.models import EventIn, EventMessage, webhook_body

log = get_logger("ingest")


@dataclass(frozen=True, slots=True)
class Accepted:
    event: StoredEvent
    duplicate: bool
    """True when the idempotency key was seen before; `event` is then the first one."""


class KeyLocks:
    """One lock per idempotency key in flight, so two copies of an event take turns.

    Without it, the second copy of a key could read the first's row before the first marked
    it dispatched, and publish it a second time.
    """

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str | None) -> AsyncIterator[None]:
        if key is None:
            yield
            return
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class Intake:
    """Stores and dispatches events. `start()` before use, `close()` after."""

    def __init__(self, pool: asyncpg.Pool, publisher: Publisher) -> None:
        self._pool = pool
        self._publisher = publisher
        self._locks = KeyLocks()
        self._marks: BatchWriter[str] = BatchWriter(self._mark_dispatched, name="events_dispatched")

    def start(self) -> None:
        self._marks.start()

    async def close(self) -> None:
        await self._marks.close()

    async def accept(self, event: EventIn, source: str) -> Accepted:
        """Store and publish `event` (already validated).

        Raises StorageUnavailable or BrokerUnavailable; the caller may try again, and the
        idempotency key (when given) keeps that from delivering twice.
        """
        async with self._locks.hold(event.id):
            stored, inserted = await event_store.insert(self._pool, new_id("evt"), event, source)
            if not inserted and stored.dispatched_at is not None:
                EVENTS_DUPLICATE.labels(source).inc()
                log.info("event_duplicate_ignored", event_id=stored.id, event_type=stored.type)
                return Accepted(stored, duplicate=True)
            await self._publisher.publish_event(_message(stored))
            if await self._mark(stored):
                stored = replace(stored, dispatched_at=datetime.now(UTC))
        if inserted:
            EVENTS_INGESTED.labels(source).inc()
            log.info("event_ingested", event_id=stored.id, event_type=stored.type, source=source)
        else:
            EVENTS_DUPLICATE.labels(source).inc()
            log.info("event_redispatched", event_id=stored.id, event_type=stored.type)
        return Accepted(stored, duplicate=not inserted)

    async def _mark(self, stored: StoredEvent) -> bool:
        try:
            await self._marks.submit([stored.id])
            return True
        except (StorageUnavailable, WriterClosed) as exc:
            # The event is already safe on {ns}.events; failing the caller now would only
            # make it publish the event again. A later copy of its key republishes it.
            log.warning("event_dispatch_unrecorded", event_id=stored.id, error=str(exc))
            return False

    async def _mark_dispatched(self, event_ids: list[str]) -> None:
        await event_store.mark_dispatched(self._pool, event_ids)


def _message(stored: StoredEvent) -> EventMessage:
    return EventMessage(
        event_id=stored.id,
        event_type=stored.type,
        tenant_id=stored.tenant_id,
        body=webhook_body(stored.type, stored.created_at, stored.data),
        accepted_at=stored.created_at.timestamp(),
    )
