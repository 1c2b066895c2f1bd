"""The handling of one delivery message, from the consumed message to its ack.

A message carries one delivery, or (a batch message: fanout's first attempts of one event's
deliveries, or of many events' in wire format 2, `shared.wire`) several, handled concurrently
and each on its own terms as below; the batch is acked once every one of them is settled. Per
delivery: look the subscription up (deleted or disabled: record `cancelled`, send nothing);
take a slot of its target (none free: wait for one while the target is healthy, else defer it
to a retry queue, confirmed); POST within the global concurrency bound; classify; then publish where
it goes next (retry queue or dead queue, confirmed), then write the attempt log (group commit),
in that order so a recorded attempt always has its next copy; ack only after both (the acks of
many messages share one frame: `shared.acks`). The HTTP slots are released before waiting for
the log, so a slow flush never holds a connection. An outage of Postgres or RabbitMQ holds
the message in hand and tries it again after a backoff, as a redelivered one (so a batch
skips what it already did), for as long as its channel lives: an outage never requeues, so
it never spends a quorum queue's delivery limit. Any other unexpected error leaves the
message unacked and nacks it back after a pause: it is tried again, never dropped (a
delivery of a batch that fails so is split off as a plain message instead, and the rest of
the batch is acked). Consuming, restoring and draining are `shared.consuming`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import asyncpg

from services.sender import client
from services.sender.attempt_log import AttemptLog, AttemptRow, DeliveryChange
from services.sender.classify import AttemptResult, Outcome, Verdict, classify
from services.sender.disable import disable
from services.sender.failures import FailureCounts
from services.sender.limits import WATCH_S, TargetLimits
from services.sender.park import Parking
from services.sender.requeue import Requeue
from services.sender.slots import Budget, Slots
from services.sender.transport import HttpPool
from shared import metrics
from shared.acks import BatchAcker, Ticket
from shared.errors import TRANSIENT_ERRORS
from shared.inbound import Inbound
from shared.logging import get_logger
from shared.retry import RetrySchedule
from shared.runtime import drain_tasks
from shared.secretbox import SecretBox
from shared.settings import Settings
from shared.stores import deliveries as stored_deliveries
from shared.subscription_cache import SubscriptionCache
from shared.subscriptions import SubscriptionTarget
from shared.wire import batches
from shared.wire.batches import deliveries_of, delivery_count
from shared.wire.messages import DeliveryMessage, deferrals_of

log = get_logger("sender")

_NACK_PAUSE_S = 1.0
_HOLD_FIRST_S = 0.2
_HOLD_MAX_S = 5.0

_ATTEMPTS_BY_OUTCOME = {o: metrics.DELIVERY_ATTEMPTS.labels(o.value) for o in Outcome}
"""The counter's child per outcome, looked up once rather than per attempt."""


@dataclass(frozen=True)
class WorkerParts:
    """What a worker works with; all of it opened and closed by `services.sender.app`."""

    settings: Settings
    pool: asyncpg.Pool
    cache: SubscriptionCache
    box: SecretBox
    http: HttpPool
    attempt_log: AttemptLog
    requeue: Requeue
    acker: BatchAcker


class DeliveryWorker:
    """Handles delivery messages; `handle` is the consumer callback (one task per message)."""

    def __init__(self, parts: WorkerParts) -> None:
        self._p = parts
        settings = parts.settings
        self._schedule = RetrySchedule(settings.retry_delays)
        self._slots = Slots(settings.sender_concurrency)
        self._in_hand = Budget(settings.sender_max_in_hand)
        self._budget_waiters: set[asyncio.Task[None]] = set()
        """Handlers still waiting for room in `_in_hand`: nothing done yet."""
        # Only attempts that ran for half the timeout or more make a target look stuck.
        self._limits = TargetLimits(
            settings.sender_per_target_concurrency, quick_s=settings.delivery_timeout / 2
        )
        self._parking = Parking(parts.pool, settings.delivery_timeout)
        self._tasks: set[asyncio.Task[None]] = set()
        self._failures = FailureCounts()
        self._held: set[int] = set()
        """Messages (by `id`) being tried again in hand after an outage."""
        self._stopping = asyncio.Event()

    async def handle(self, message: Inbound) -> None:
        """Handle one consumed message to its ack (or, on an unexpected error, its nack).

        The ack itself is sent by the `BatchAcker` within a few ms of returning.
        """
        ticket = self._p.acker.received(message)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await self._process_holding(message)
            self._failures.succeeded(_failure_key(message))
            self._p.acker.finish(ticket)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._failed(message, ticket, exc)
        finally:
            self._held.discard(id(message))
            if task is not None:
                self._tasks.discard(task)

    async def _process_holding(self, message: Inbound) -> None:
        """`_process`, tried again in hand after an outage while the message's channel lives
        (then the broker hands it out again) and the sender is not stopping."""
        delay_s = _HOLD_FIRST_S
        while True:
            try:
                await self._process(message)
                return
            except TRANSIENT_ERRORS as exc:
                if self._stopping.is_set() or message.channel.is_closed:
                    raise
                # Warned once per message: an outage holds a whole prefetch window.
                emit = log.warning if delay_s == _HOLD_FIRST_S else log.debug
                emit(
                    "delivery_held",
                    message_id=message.message_id,
                    error=f"{type(exc).__name__}: {exc}",
                    retry_in_s=delay_s,
                )
            self._held.add(id(message))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay_s)
            delay_s = min(delay_s * 2, _HOLD_MAX_S)

    async def _failed(self, message: Inbound, ticket: Ticket, exc: Exception) -> None:
        """Nack `message` back after a pause; dead-letter it instead (then ack) once it failed
        `FAILURE_LIMIT` times for a reason other than an outage of Postgres or RabbitMQ."""
        error = f"{type(exc).__name__}: {exc}"
        log.error(
            "delivery_handling_failed", message_id=message.message_id, error=error, exc_info=exc
        )
        transient = isinstance(exc, TRANSIENT_ERRORS)
        if not transient and self._failures.failed(
            _failure_key(message), redelivered=bool(message.redelivered)
        ):
            if await self._give_up(message, f"handling_failed: {error}"[:1000]):
                self._p.acker.finish(ticket)
                return
        await asyncio.sleep(_NACK_PAUSE_S)
        try:
            with contextlib.suppress(Exception):
                await message.nack(requeue=True)
        finally:
            # Settled either way: nacked, or its channel is gone (and the broker requeues
            # it). Forgetting only after the nack was sent keeps a tag unsettled at the
            # broker out of any multiple ack meanwhile; never forgetting it would make every
            # later ack wait ACK_HOLD_S and go out alone.
            self._p.acker.forget(ticket)

    async def _give_up(self, message: Inbound, error: str) -> bool:
        """Move a message that keeps failing to the dead queue (confirmed), then mark its
        delivery failed; False when the dead copy was not confirmed (the message is then
        nacked back).

        Once the dead copy is confirmed the message is acked even if marking the delivery
        fails: nacking it back would make a second dead copy later. The copy carries the
        reason; the row stays as it was (a redrive or a later copy settles it).
        """
        try:
            msgs: list[DeliveryMessage] | None = deliveries_of(message)
        except ValueError:
            msgs = None
        if msgs is None:
            try:
                await self._p.requeue.dead_raw(
                    dict(message.headers or {}), message.body, error, message_id=message.message_id
                )
            except Exception as exc:
                log.error(
                    "delivery_not_dead_lettered", message_id=message.message_id, error=repr(exc)
                )
                return False
            metrics.DEAD_LETTERED.inc()
            log.error("delivery_dead_lettered", message_id=message.message_id, error=error)
            return True
        if len(msgs) > 1:
            # A batch: only what nothing was done with yet (the rest succeeded, or travels
            # on as a message of its own). Each is dead-lettered as a plain message, which
            # `hookline dead list` and `redrive` read like any other.
            try:
                msgs = await self._not_started(msgs)
            except Exception as exc:
                # Not knowing which are done, dead-lettering all could revive some: later.
                log.error(
                    "delivery_not_dead_lettered", message_id=message.message_id, error=repr(exc)
                )
                return False
        for msg in msgs:
            try:
                await self._p.requeue.dead(msg, error)
            except Exception as exc:
                log.error(
                    "delivery_not_dead_lettered", delivery_id=msg.delivery_id, error=repr(exc)
                )
                return False
            metrics.DEAD_LETTERED.inc()
            log.error("delivery_dead_lettered", delivery_id=msg.delivery_id, error=error)
            try:
                await self._p.attempt_log.record(
                    DeliveryChange(
                        msg.delivery_id, msg.subscription_id, "failed", event_id=msg.event_id
                    )
                )
            except Exception as exc:
                log.error(
                    "dead_lettered_delivery_not_marked_failed",
                    delivery_id=msg.delivery_id,
                    error=repr(exc),
                )
        return True

    async def drain(self, grace_s: float) -> None:
        """Wait up to `grace_s` for messages in hand, then cancel the rest (left unacked)."""
        self._stopping.set()
        # Let handler tasks the consumer created just before it was cancelled start (and
        # register), so they are waited for too.
        await asyncio.sleep(0)
        # Those still waiting for room have done nothing: leave them unacked for the next
        # sender rather than start them now and cut them off at the end of the grace.
        for task in list(self._budget_waiters):
            task.cancel()
        cancelled = await drain_tasks(self._tasks, grace_s)
        if cancelled:
            log.warning("deliveries_abandoned_at_shutdown", count=cancelled)
        # After the messages: their handlers may have started a park or an unpark last.
        await self._parking.close()

    async def _process(self, message: Inbound) -> None:
        # Deliveries in hand are bounded (`Budget`): a message is expanded only once its
        # deliveries fit, and until then holds just its unacked body.
        task = asyncio.current_task()
        if task is not None:
            self._budget_waiters.add(task)
        try:
            taken = await self._in_hand.acquire(delivery_count(message))
        finally:
            if task is not None:
                self._budget_waiters.discard(task)
        try:
            if message.channel.is_closed:
                # Its channel was lost while it waited: the broker hands it out again (as
                # redelivered, so what was done is checked then). Nothing to do here.
                return
            try:
                deliveries = deliveries_of(message)
            except ValueError as exc:
                log.error("malformed_delivery_dead_lettered", error=str(exc))
                await self._p.requeue.dead_raw(
                    dict(message.headers or {}), message.body, f"malformed: {exc}"
                )
                metrics.DEAD_LETTERED.inc()
                return
            if len(deliveries) == 1 and batches.kind_of(message.headers) is None:
                await self._deliver(deliveries[0], deferrals_of(message.headers))
            else:
                # A format 2 message is checked even when new, unless fanout says it stored
                # its deliveries just before publishing them: fanout publishes deliveries
                # again when a confirm failed, and one copy may come after the other was
                # delivered (one query per message of up to 500 deliveries).
                check = (
                    bool(message.redelivered)
                    or id(message) in self._held
                    or (
                        batches.kind_of(message.headers) is not None
                        and not batches.is_fresh(message.headers)
                    )
                )
                await self._deliver_batch(deliveries, redelivered=check)
        finally:
            self._in_hand.release(taken)

    async def _deliver_batch(self, deliveries: list[DeliveryMessage], *, redelivered: bool) -> None:
        """Deliver the deliveries of one batch message concurrently, each on its own terms
        (its target's slots, its own retry or dead-lettering); returns when every one is
        settled, so the message is acked once for all.

        A delivery whose handling failed unexpectedly is split off as a plain message to the
        work queue (confirmed), where it is tried again alone; the others are not held back
        or sent again. A batch handed out again (redelivered after a crash or a lost channel)
        skips the deliveries that already made an attempt or were settled.
        """
        if redelivered:
            deliveries = await self._not_started(deliveries)
        results = await asyncio.gather(
            *(self._deliver(d, 0, in_batch=True) for d in deliveries), return_exceptions=True
        )
        alone: list[DeliveryMessage] = []
        for delivery, result in zip(deliveries, results, strict=True):
            if isinstance(result, asyncio.CancelledError):
                raise result
            if isinstance(result, BaseException):
                log.error(
                    "delivery_handling_failed",
                    delivery_id=delivery.delivery_id,
                    error=f"{type(result).__name__}: {result}",
                    exc_info=result,
                )
                alone.append(delivery)
        if alone:
            await asyncio.gather(*(self._split_off(d) for d in alone))

    async def _split_off(self, msg: DeliveryMessage) -> None:
        """Send `msg` on alone (confirmed), then mark its row as handed on (see `_handed_on`)."""
        await self._p.requeue.alone(msg)
        await self._handed_on(msg, datetime.now(UTC))

    async def _handed_on(self, msg: DeliveryMessage, comes_back_at: datetime) -> None:
        """Mark a delivery of a batch that now travels as a plain message of its own (deferred
        or split off) with `next_attempt_at`, after that message was confirmed: a redelivered
        batch then leaves it out (`_not_started`) rather than start a second copy of it."""
        await self._p.attempt_log.record(
            DeliveryChange(
                msg.delivery_id,
                msg.subscription_id,
                "pending",
                None,
                comes_back_at,
                event_id=msg.event_id,
            )
        )

    async def _not_started(self, deliveries: list[DeliveryMessage]) -> list[DeliveryMessage]:
        """The deliveries of a redelivered batch that nothing was done with yet: still pending,
        no attempt recorded, not handed on as a message of their own. What was done with the
        others is recorded only after their next place (retry or dead queue, a plain copy)
        was confirmed, so leaving them out never loses one."""
        async with self._p.pool.acquire() as conn:
            pending = await stored_deliveries.not_started(conn, [d.delivery_id for d in deliveries])
        skipped = len(deliveries) - len(pending)
        if skipped:
            log.info("redelivered_batch_partly_done", skipped=skipped, left=len(pending))
        return [d for d in deliveries if d.delivery_id in pending]

    async def _deliver(
        self, msg: DeliveryMessage, deferrals: int, *, in_batch: bool = False
    ) -> None:
        """One delivery: cancel, defer (its target has no free slot) or attempt and settle.

        `deferrals` is how many times in a row it was deferred before; `in_batch` says it came
        in a batch message (a deferral is then also marked on its row)."""
        sub = await self._subscription(msg.subscription_id)
        if sub is None or not sub.enabled:
            await self._cancel(msg, deleted=sub is None)
            return
        attempted = await self._try_attempt(msg, sub)
        if attempted is None:
            stuck_s = self._limits.stuck_for(sub.id)
            # Marked on its row even for a plain message: the row's `next_attempt_at` then says
            # when its live message comes back, which the overdue sweep relies on.
            await self._defer(msg, deferrals + 1, stuck_s, mark=True)
            self._parking.stuck(sub, stuck_s)
            return
        result, started_at = attempted
        if result.duration_s < self._p.settings.delivery_timeout / 2:
            self._parking.quick(sub)
        await self._settle(msg, sub, result, started_at)

    async def _try_attempt(
        self, msg: DeliveryMessage, sub: SubscriptionTarget
    ) -> tuple[AttemptResult, datetime] | None:
        """POST holding a global slot and one of the target's share; None (defer it) when the
        target holds its share and is stuck or slow.

        The global slot first: a delivery waiting for a global slot must not count against
        its target's share, or a long queue of healthy deliveries would make their own target
        refuse (and defer) the rest. A healthy target at its share (a batch of one tenant's
        events, say) frees a slot within milliseconds: its delivery waits for one, holding no
        global slot, rather than go round a retry queue for seconds (`TargetLimits`).
        """
        limits = self._limits
        while True:
            async with self._slots:
                if limits.try_acquire(sub.id):
                    return await self._attempt_holding(msg, sub)
            if limits.stuck_for(sub.id) > WATCH_S or limits.slow(sub.id):
                return None
            if not await limits.wait_for_room(sub.id):
                return None

    async def _attempt_holding(
        self, msg: DeliveryMessage, sub: SubscriptionTarget
    ) -> tuple[AttemptResult, datetime]:
        """`_attempt`, then give the target's slot back (the caller holds a global one)."""
        took_s = 0.0
        try:
            result, started_at = await self._attempt(msg, sub)
            took_s = result.duration_s
        finally:
            self._limits.release(sub.id, took_s)
        return result, started_at

    async def _subscription(self, subscription_id: str) -> SubscriptionTarget | None:
        # A miss is read from Postgres, in one query with the other misses of the moment
        # (a batch message's deliveries): None means deleted, not merely not cached.
        return await self._p.cache.get(subscription_id)

    async def _cancel(self, msg: DeliveryMessage, *, deleted: bool) -> None:
        await self._p.attempt_log.record(
            DeliveryChange(msg.delivery_id, msg.subscription_id, "cancelled", event_id=msg.event_id)
        )
        metrics.DELIVERIES_CANCELLED.inc()
        log.info(
            "delivery_cancelled",
            delivery_id=msg.delivery_id,
            subscription_id=msg.subscription_id,
            reason="subscription_deleted" if deleted else "subscription_disabled",
        )

    async def _defer(
        self, msg: DeliveryMessage, deferrals: int, stuck_s: float, *, mark: bool
    ) -> None:
        patience_s = self._p.settings.delivery_timeout
        # A target stuck for several timeouts is treated as if this delivery had been deferred
        # that many times already: its backlog is deferred for longer from the first deferral on.
        effective = deferrals + int(stuck_s // patience_s)
        delay_s = self._schedule.deferral_delay(effective, patience_s)
        await self._p.requeue.retry(msg, delay_s, deferrals=deferrals)
        if mark:
            await self._handed_on(msg, datetime.now(UTC) + timedelta(seconds=delay_s))
        metrics.DELIVERIES_DEFERRED.inc()
        log.debug(
            "delivery_deferred",
            delivery_id=msg.delivery_id,
            subscription_id=msg.subscription_id,
            deferrals=deferrals,
            delay_s=delay_s,
        )

    async def _attempt(
        self, msg: DeliveryMessage, sub: SubscriptionTarget
    ) -> tuple[AttemptResult, datetime]:
        """One POST; the caller holds a global slot and one of the target's."""
        settings = self._p.settings
        metrics.INFLIGHT_ATTEMPTS.inc()
        try:
            started_at = datetime.now(UTC)
            result = await client.post(
                self._p.http,
                sub.url,
                client.webhook_headers(msg, sub, started_at),
                msg.body,
                body_cap=settings.response_body_cap,
                timeout_s=settings.delivery_timeout,
            )
        finally:
            metrics.INFLIGHT_ATTEMPTS.dec()
        return result, started_at

    async def _settle(
        self,
        msg: DeliveryMessage,
        sub: SubscriptionTarget,
        result: AttemptResult,
        started_at: datetime,
    ) -> None:
        verdict = classify(result, msg.attempt, self._schedule)
        self._observe(msg, sub, result, verdict)
        change = _change(msg, result, verdict, started_at)
        requeue = self._p.requeue
        # The next place first, then the record: a recorded attempt always has its retry or
        # dead copy, which is what lets a redelivered batch leave it out (`_not_started`).
        if verdict.outcome is Outcome.RETRY:
            assert verdict.retry_in_s is not None
            await requeue.retry(msg.next_attempt(), verdict.retry_in_s)
            await self._p.attempt_log.record(change)
        elif verdict.outcome is Outcome.FAILED:
            await requeue.dead(msg, verdict.error or "failed")
            metrics.DEAD_LETTERED.inc()
            await self._p.attempt_log.record(change)
        elif verdict.outcome is Outcome.GONE:
            async with self._p.pool.acquire() as conn:
                await disable(conn, [sub.id], "gone", keep_delivery_ids=(msg.delivery_id,))
            await self._p.attempt_log.record(change)
        else:
            await self._p.attempt_log.record(change)

    def _observe(
        self, msg: DeliveryMessage, sub: SubscriptionTarget, result: AttemptResult, verdict: Verdict
    ) -> None:
        _ATTEMPTS_BY_OUTCOME[verdict.outcome].inc()
        metrics.DELIVERY_DURATION.observe(result.duration_s)
        if verdict.outcome is Outcome.SUCCESS and msg.accepted_at > 0:
            metrics.END_TO_END.observe(max(0.0, time.time() - msg.accepted_at))
        # Every attempt is in the attempt log and the metrics; at info level only the ones
        # that did not succeed are logged, sparing one log render (and the building of its
        # fields) per healthy delivery.
        succeeded = verdict.outcome is Outcome.SUCCESS
        if succeeded and not log.is_enabled_for(logging.DEBUG):
            return
        emit = log.debug if succeeded else log.info
        emit(
            "delivery_attempted",
            delivery_id=msg.delivery_id,
            event_id=msg.event_id,
            subscription_id=msg.subscription_id,
            host=urlsplit(sub.url).hostname,
            attempt=msg.attempt,
            status_code=result.status_code,
            duration_ms=round(result.duration_s * 1000),
            outcome=verdict.outcome.value,
            error_kind=verdict.error_kind.value if verdict.error_kind else None,
            retry_in_s=verdict.retry_in_s,
        )


def _failure_key(message: Inbound) -> str:
    # The delivery id; a message without one is keyed by its body, the same on redelivery.
    return message.message_id or f"body:{hash(message.body)}"


def _change(
    msg: DeliveryMessage, result: AttemptResult, verdict: Verdict, started_at: datetime
) -> DeliveryChange:
    row = AttemptRow(
        delivery_id=msg.delivery_id,
        attempt=msg.attempt,
        attempted_at=started_at,
        status_code=result.status_code,
        duration_ms=round(result.duration_s * 1000),
        outcome=verdict.outcome.value,
        error_kind=verdict.error_kind.value if verdict.error_kind else None,
        error=verdict.error,
        response_body=result.response_body,
    )
    next_at = (
        started_at + timedelta(seconds=result.duration_s + verdict.retry_in_s)
        if verdict.retry_in_s is not None
        else None
    )
    return DeliveryChange(
        msg.delivery_id,
        msg.subscription_id,
        verdict.delivery_status,
        row,
        next_at,
        event_id=msg.event_id,
    )
