"""The attempt log: one `delivery_attempts` row per attempt and the `deliveries` row's state.

Written in batches (group commit), never one round trip per attempt: `record()` queues a
change and returns once the transaction holding it has committed, so the caller acks its
message only after what the attempt caused is durable. A batch is flushed when it is
`max_rows` long or `flush_interval_s` after its first change. When Postgres fails, the same
batch is written again with a capped backoff and `healthy` is False meanwhile; callers keep
waiting and ack nothing, so a sender killed then loses nothing (the broker redelivers).

The same transaction keeps `subscriptions.failing_since` (the first failure since the last
success) for the auto-disable sweep, writing only when it changes: each write wakes every
subscription cache.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from shared.errors import DATABASE_ERRORS
from shared.logging import get_logger
from shared.metrics import DB_BATCH_SIZE
from shared.stores import deliveries, delivery_attempts, subscriptions
from shared.supervision import spawn

log = get_logger("attempt_log")

_RETRY_FIRST_S = 0.1
_RETRY_MAX_S = 5.0
Conn = asyncpg.Connection | PoolConnectionProxy
"""A connection of its own or one lent by the pool."""


def _text(value: str | None) -> str | None:
    """Postgres text cannot hold NUL: one in an error message would fail the whole batch."""
    return None if value is None else value.replace("\x00", "\ufffd")


@dataclass(frozen=True, slots=True)
class AttemptRow:
    """One row of `delivery_attempts`."""

    delivery_id: str
    attempt: int
    attempted_at: datetime
    status_code: int | None
    duration_ms: int
    outcome: str
    error_kind: str | None
    error: str | None
    response_body: str | None

    def as_record(self) -> tuple[object, ...]:
        """The values in the order of `shared.stores.delivery_attempts.COLUMNS`."""
        return (
            self.delivery_id,
            self.attempt,
            self.attempted_at,
            self.status_code,
            self.duration_ms,
            self.outcome,
            self.error_kind,
            _text(self.error),
            _text(self.response_body),
        )


@dataclass(frozen=True, slots=True)
class DeliveryChange:
    """What one handled message changes on its `deliveries` row (and its subscription)."""

    delivery_id: str
    subscription_id: str
    status: str
    attempt: AttemptRow | None = None
    """The attempt made, or None when nothing was sent (a cancelled delivery)."""
    next_attempt_at: datetime | None = None
    event_id: str | None = None
    """The delivery's event, which names its partition; looked up when not given."""


@dataclass(slots=True)
class _Merged:
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None


def _merge(changes: list[DeliveryChange]) -> dict[str, _Merged]:
    """One update per delivery, so a batch holding two changes of one row adds both attempts."""
    merged: dict[str, _Merged] = {}
    for change in changes:
        row = change.attempt
        previous = merged.get(change.delivery_id)
        entry = _Merged(
            status=(
                deliveries.next_status(previous.status, change.status, attempted=row is not None)
                if previous
                else change.status
            ),
            attempts=(previous.attempts if previous else 0) + (1 if row else 0),
            last_status_code=row.status_code if row else None,
            last_error=_text(row.error) if row else None,
            last_attempt_at=row.attempted_at if row else None,
            next_attempt_at=change.next_attempt_at,
        )
        if previous is not None and entry.status != change.status:
            entry.next_attempt_at = previous.next_attempt_at
        if previous is not None and row is None:
            entry.last_status_code = previous.last_status_code
            entry.last_error = previous.last_error
            entry.last_attempt_at = previous.last_attempt_at
        merged[change.delivery_id] = entry
    return merged


def failing_transitions(
    changes: list[DeliveryChange],
) -> tuple[list[str], list[tuple[str, datetime, bool]]]:
    """Subscriptions whose failing streak ended, and those whose streak began (with when).

    A streak begins at the first failure after the last success; (id, since, after_success)
    tells whether a success in this batch came before it, which restarts an older streak.
    """
    successes: dict[str, datetime] = {}
    failures: dict[str, list[datetime]] = {}
    for change in changes:
        row = change.attempt
        if row is None or row.outcome == "gone":
            continue
        if row.outcome == "success":
            last = successes.get(change.subscription_id)
            if last is None or row.attempted_at > last:
                successes[change.subscription_id] = row.attempted_at
        else:
            failures.setdefault(change.subscription_id, []).append(row.attempted_at)
    cleared: list[str] = []
    started: list[tuple[str, datetime, bool]] = []
    for sub_id in successes.keys() | failures.keys():
        success_at = successes.get(sub_id)
        after = [t for t in failures.get(sub_id, []) if success_at is None or t > success_at]
        if after:
            started.append((sub_id, min(after), success_at is not None))
        else:
            cleared.append(sub_id)
    return cleared, started


async def write_batch(conn: Conn, changes: list[DeliveryChange]) -> None:
    """Write one batch in one transaction; attempts of unknown deliveries are left out."""
    merged = _merge(changes)
    cleared, started = failing_transitions(changes)
    async with conn.transaction():
        events = await _event_ids(conn, changes)
        known = await deliveries.apply_changes(
            conn,
            list(merged),
            [m.status for m in merged.values()],
            [m.attempts for m in merged.values()],
            [m.last_status_code for m in merged.values()],
            [m.last_error for m in merged.values()],
            [m.last_attempt_at for m in merged.values()],
            [m.next_attempt_at for m in merged.values()],
            [events.get(d) for d in merged],
        )
        records = [
            c.attempt.as_record()
            for c in changes
            if c.attempt is not None and c.delivery_id in known
        ]
        if records:
            await delivery_attempts.insert(conn, records)
        if cleared:
            await subscriptions.clear_failing(conn, cleared)
        if started:
            await subscriptions.set_failing(conn, started)
    if len(known) < len(merged):
        log.warning("attempts_of_unknown_deliveries_skipped", count=len(merged) - len(known))
    DB_BATCH_SIZE.labels("delivery_attempts").observe(len(records))


async def _event_ids(conn: Conn, changes: list[DeliveryChange]) -> dict[str, str]:
    """The event id of each changed delivery (None-free): as given, else as stored."""
    known = {c.delivery_id: c.event_id for c in changes if c.event_id is not None}
    missing = [c.delivery_id for c in changes if c.delivery_id not in known]
    if missing:
        known.update(await deliveries.event_ids(conn, missing))
    return known


BatchWriter = Callable[[Conn, list[DeliveryChange]], Awaitable[None]]


class AttemptLog:
    """Batches `DeliveryChange`s into few transactions; `start()` first, `close()` last."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        flush_interval_s: float = 0.015,
        max_rows: int = 500,
        writer: BatchWriter | None = None,
    ) -> None:
        self._pool = pool
        self._writer: BatchWriter = writer or write_batch
        self._flush_interval_s = flush_interval_s
        self._max_rows = max_rows
        self._pending: list[DeliveryChange] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._wakeup = asyncio.Event()
        self._full = asyncio.Event()
        self._closing = False
        self._healthy = True
        self._task: asyncio.Task[None] | None = None

    @property
    def healthy(self) -> bool:
        """False while the last write failed and is being tried again, or the writer died."""
        return self._healthy and self._task is not None and not self._task.done()

    def start(self) -> None:
        self._task = spawn(self._run(), name="attempt-log-flusher")

    async def record(self, change: DeliveryChange) -> None:
        """Queue `change`; returns once it is committed (raises only when the log closed)."""
        if self._task is None or self._task.done():
            raise RuntimeError("the attempt log is not running")
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(change)
        self._waiters.append(waiter)
        self._wakeup.set()
        if len(self._pending) >= self._max_rows:
            self._full.set()
        await asyncio.shield(waiter)

    async def close(self, timeout_s: float) -> None:
        """Write what is queued (trying for at most `timeout_s`), then stop."""
        self._closing = True
        self._wakeup.set()
        self._full.set()
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
        except TimeoutError:
            log.error("attempt_log_close_timed_out", unwritten=len(self._pending))
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for waiter in self._waiters:
            waiter.cancel()

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            if not self._closing and len(self._pending) < self._max_rows:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self._flush_interval_s)
            self._wakeup.clear()
            self._full.clear()
            batch, waiters = self._pending, self._waiters
            self._pending, self._waiters = [], []
            try:
                if batch:
                    await self._write_until_done(batch)
            except asyncio.CancelledError:
                # Closed before the write got through: its callers must not ack.
                for waiter in waiters:
                    waiter.cancel()
                raise
            except Exception as exc:
                # A bug, not an outage: fail these callers (their messages are nacked and
                # come back) and keep the writer alive for everyone else.
                log.error("attempt_log_batch_failed", rows=len(batch), exc_info=exc)
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(exc)
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
            if self._closing and not self._pending:
                return

    async def _write_until_done(self, batch: list[DeliveryChange]) -> None:
        delay_s = _RETRY_FIRST_S
        while True:
            try:
                async with self._pool.acquire() as conn:
                    await self._writer(conn, batch)
            except DATABASE_ERRORS as exc:
                self._healthy = False
                log.warning(
                    "attempt_log_write_failed",
                    rows=len(batch),
                    error=f"{type(exc).__name__}: {exc}",
                    retry_in_s=delay_s,
                )
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, _RETRY_MAX_S)
                continue
            self._healthy = True
            return
