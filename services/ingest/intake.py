"""Accepting a valid event: store it once, publish it to fanout, remember it was published.

Shared by the AMQP consumer and `POST /v1/events`, so both keep the same guarantees: an event
is stored before it is published, published (confirmed) before the caller hears "accepted",
and an idempotency key already dispatched is never published again. A key stored but never
dispatched (a crash between store and publish) is published again on its next arrival.
Within a process `KeyLocks` make copies of a key take turns; across ingest processes
sharing the database, a dispatch claim on the event's row lets only one of them publish.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import asyncpg

from services.ingest.idempotency import check_same, lock_key
from services.ingest.publisher import Publisher
from shared.batching import BatchWriter, WriterClosed
from shared.errors import (
    DATABASE_ERRORS,
    BrokerUnavailable,
    HooklineError,
    StorageUnavailable,
)
from shared.ids import new_id
from shared.logging import get_logger
from shared.metrics import EVENTS_DUPLICATE, EVENTS_INGESTED
from shared.models import EventIn, webhook_body
from shared.stores import events as event_store
from shared.stores.events import NewEvent, StoredEvent
from shared.wire.messages import EventMessage

log = get_logger("ingest")

BATCH_DELAY_S = 0.010
"""How long a batch waits for more events by default (`HOOKLINE_INGEST_BATCH_DELAY`); while
one batch is written the next one gathers."""
HTTP_BATCH_DELAY_S = 0.003
"""At most this for an event of `POST /v1/events`: its caller waits for the answer (with a
fixed number of connections, every millisecond of wait is throughput lost), while an AMQP
message waits unacked in the prefetch window, where a longer wait costs nothing."""
BATCH_MAX_EVENTS = 500
CLAIM_STALE_S = 30.0
"""After this long an undispatched event's claim is presumed dead (its process crashed or
hung) and another process may publish it; well above the publisher's confirm timeout."""
CLAIM_WAIT_S = 2.5
"""How long a copy of a key that another process is publishing waits for that publish to be
recorded, so its caller hears of the first event (CONTRACT §2) instead of "try again"."""
_CLAIM_POLL_S = (0.05, 0.5)
"""The first pause between looks at such an event, doubled up to the second after each."""
_STORE_ERRORS: tuple[type[BaseException], ...] = (StorageUnavailable, *DATABASE_ERRORS)
BATCH_CONCURRENCY = 4
"""Batches in their store/publish/mark steps at once (each holds one pooled connection)."""


@dataclass(frozen=True, slots=True)
class Accepted:
    event: StoredEvent
    duplicate: bool
    """True when the idempotency key was seen before; `event` is then the first one."""


class KeyLocks:
    """One lock per idempotency key in flight, so two copies of an event take turns.

    Without it, the second copy of a key would find the first's row claimed but not yet
    dispatched, and be told to try again instead of answered once the first is published.
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


@dataclass(slots=True)
class _Pending:
    """One `accept` call inside a batch; the batch fills in its outcome."""

    new: NewEvent
    stored: StoredEvent | None = None
    inserted: bool = False
    claim: event_store.Claim | None = None
    """The dispatch claim this process holds on the event, once it does."""
    published: bool = False
    error: HooklineError | None = None
    claimed_elsewhere: bool = False
    """Undispatched, and another process holds its fresh claim: `error` says try again."""


class Intake:
    """Stores and dispatches events in batches. `start()` before use, `close()` after.

    Events accepted within a few milliseconds of each other (from AMQP and HTTP alike) share
    one INSERT statement, one burst of publishes whose confirms are awaited together, and
    one UPDATE marking them dispatched.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        publisher: Publisher,
        *,
        window_s: float = event_store.DEFAULT_WINDOW_S,
        batch_delay_s: float = BATCH_DELAY_S,
    ) -> None:
        self._pool = pool
        self._publisher = publisher
        self._window_s = window_s
        self._locks = KeyLocks()
        self._batches: BatchWriter[_Pending, None] = BatchWriter(
            self._store_and_dispatch,
            name="events",
            max_rows=BATCH_MAX_EVENTS,
            max_delay_s=batch_delay_s,
            concurrency=BATCH_CONCURRENCY,
            is_row_error=_is_row_error,
        )

    def start(self) -> None:
        self._batches.start()

    async def close(self) -> None:
        await self._batches.close()

    async def accept(self, event: EventIn, source: str) -> Accepted:
        """Store and publish `event` (already validated).

        Raises StorageUnavailable or BrokerUnavailable; the caller may try again, and the
        idempotency key (when given) keeps that from delivering twice. Raises
        IdempotencyConflict when the key stands, within its window, for another event.
        """
        if self._publisher.blocked():
            # Refused before it is stored: nothing could be confirmed during the alarm.
            raise BrokerUnavailable("RabbitMQ blocks publishes (resource alarm); try again")
        pending = _Pending(NewEvent(new_id("evt"), event, source))
        # Held until the event is marked dispatched: a second copy of the key then finds the
        # first one dispatched instead of publishing it again.
        async with self._locks.hold(lock_key(event)):
            try:
                await self._batches.submit([pending], max_delay_s=_delay_for(source))
            except WriterClosed as exc:
                raise BrokerUnavailable("ingest is shutting down") from exc
            if pending.claimed_elsewhere:
                await self._await_dispatch(pending)
        if pending.error is not None:
            raise pending.error
        stored = pending.stored
        assert stored is not None
        if not pending.inserted:
            check_same(stored, event)
        if pending.inserted:
            EVENTS_INGESTED.labels(source).inc()
            log.info("event_ingested", event_id=stored.id, event_type=stored.type, source=source)
        elif pending.published:
            EVENTS_DUPLICATE.labels(source).inc()
            log.info("event_redispatched", event_id=stored.id, event_type=stored.type)
        else:
            EVENTS_DUPLICATE.labels(source).inc()
            log.info("event_duplicate_ignored", event_id=stored.id, event_type=stored.type)
        return Accepted(stored, duplicate=not pending.inserted)

    async def _store_and_dispatch(self, batch: list[_Pending]) -> None:
        """The batch writer's write: raises only before anything was published."""
        firsts, copies = _merge_copies(batch)
        results = await event_store.insert_many(self._pool, [p.new for p in firsts], self._window_s)
        claimed: list[_Pending] = []  # a new row is claimed by the INSERT storing it
        undispatched: list[_Pending] = []
        for pending, (stored, claim) in zip(firsts, results, strict=True):
            pending.stored, pending.claim, pending.inserted = stored, claim, claim is not None
            if pending.inserted:
                claimed.append(pending)
            elif stored.dispatched_at is None:
                undispatched.append(pending)
        claimed += await self._claim(undispatched)
        await self._publish(claimed)
        for copy, first in copies:
            copy.stored, copy.inserted, copy.error = first.stored, False, first.error
            copy.claimed_elsewhere = first.claimed_elsewhere

    async def _claim(self, undispatched: list[_Pending]) -> list[_Pending]:
        """Those of the stored, undispatched events this process may now publish.

        The others were dispatched meanwhile (a plain duplicate), or another ingest process
        is publishing them right now: their callers wait briefly for it to finish, else are
        told to try again, and by then the event is dispatched, or its claim was released or
        went stale.
        """
        if not undispatched:
            return []
        ids = [p.stored.id for p in undispatched if p.stored is not None]
        try:
            claims = await event_store.claim_dispatch(self._pool, ids, CLAIM_STALE_S)
        except StorageUnavailable as exc:
            for pending in undispatched:
                pending.error = exc
            return []
        mine: list[_Pending] = []
        for pending in undispatched:
            assert pending.stored is not None
            pending.stored, pending.claim = claims[pending.stored.id]
            if pending.claim is not None:
                mine.append(pending)
            elif pending.stored.dispatched_at is None:
                pending.claimed_elsewhere = True
                pending.error = BrokerUnavailable(
                    f"event {pending.stored.id} is being published by another ingest process"
                )
        return mine

    async def _await_dispatch(self, pending: _Pending) -> None:
        """Wait up to CLAIM_WAIT_S for the claim holder to record the event dispatched.

        Once it is, `pending` becomes a plain duplicate answered with the event. Otherwise
        (still undispatched, the claim released after a failed publish, or the database
        failing) its try-again error stays.
        """
        stored = pending.stored
        assert stored is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CLAIM_WAIT_S
        pause, longest = _CLAIM_POLL_S
        while (left := deadline - loop.time()) > 0:
            await asyncio.sleep(min(pause, left))
            pause = min(2 * pause, longest)
            try:
                dispatched_at, held = await event_store.dispatch_state(self._pool, stored.id)
            except _STORE_ERRORS:
                return
            if dispatched_at is not None:
                pending.stored = replace(stored, dispatched_at=dispatched_at)
                pending.error, pending.claimed_elsewhere = None, False
                return
            if not held:
                return  # its publish failed: the caller's next try publishes it at once

    async def _publish(self, claimed: list[_Pending]) -> None:
        stored = [p.stored for p in claimed if p.stored is not None]
        errors = await self._publisher.publish_events([_message(event) for event in stored])
        published: list[_Pending] = []
        failed: dict[str, event_store.Claim] = {}
        for pending, event, error in zip(claimed, stored, errors, strict=True):
            if error is None:
                pending.published = True
                published.append(pending)
            else:
                pending.error = error
                if pending.claim is not None:
                    failed[event.id] = pending.claim
        await self._mark(published)
        await self._release(failed)

    async def _release(self, claims: dict[str, event_store.Claim]) -> None:
        try:
            await event_store.release_dispatch(self._pool, claims)
        except _STORE_ERRORS as exc:
            # The claims go stale after CLAIM_STALE_S; until then copies are told to retry.
            log.warning("events_claim_unreleased", events=len(claims), error=str(exc))

    async def _mark(self, published: list[_Pending]) -> None:
        if not published:
            return
        ids = [p.stored.id for p in published if p.stored is not None]
        try:
            await event_store.mark_dispatched(self._pool, ids)
        except _STORE_ERRORS as exc:
            # The events are already safe on {ns}.events; failing the callers now would only
            # make them publish the events again. A later copy of a key republishes it once
            # the claim goes stale. Any database error, not only an outage, since this batch
            # may raise only before it published.
            log.warning("events_dispatch_unrecorded", events=len(ids), error=str(exc))
            return
        now = datetime.now(UTC)
        for pending in published:
            if pending.stored is not None:
                pending.stored = replace(pending.stored, dispatched_at=now)


def _merge_copies(batch: list[_Pending]) -> tuple[list[_Pending], list[tuple[_Pending, _Pending]]]:
    """The first of each idempotency key (per tenant), and each later copy with its first.

    KeyLocks keep copies of a key in separate batches within one process; merging here
    keeps the guarantee even if they meet, since one INSERT cannot see its own rows.
    """
    firsts: list[_Pending] = []
    copies: list[tuple[_Pending, _Pending]] = []
    seen: dict[str, _Pending] = {}
    for pending in batch:
        key = lock_key(pending.new.event)
        if key is None:
            firsts.append(pending)
        elif key in seen:
            copies.append((pending, seen[key]))
        else:
            seen[key] = pending
            firsts.append(pending)
    return firsts, copies


def _delay_for(source: str) -> float | None:
    return HTTP_BATCH_DELAY_S if source == "http" else None


def _is_row_error(exc: BaseException) -> bool:
    """Postgres refusing some row's data (e.g. a NUL in a string): split the batch to find it."""
    return isinstance(exc, asyncpg.DataError | asyncpg.IntegrityConstraintViolationError)


def _message(stored: StoredEvent) -> EventMessage:
    return EventMessage(
        event_id=stored.id,
        event_type=stored.type,
        tenant_id=stored.tenant_id,
        body=webhook_body(stored.type, stored.created_at, stored.data),
        accepted_at=stored.created_at.timestamp(),
    )
