"""Batched acks: many finished messages acknowledged with one `basic.ack(multiple=True)`.

Used by the consumers of the sender and of ingest. A message is still acked only after what
it caused is durable: the consumer calls `finish` only then (the sender after the attempt
log's commit and the next place's confirm, ingest after its event's confirm); only the AMQP
frame is shared.
Each tick, the longest contiguous run of finished tags from the oldest outstanding one goes
out as one multiple ack. A finished tag stuck behind an older unfinished one (a hanging
receiver) is acked on its own once it has waited `hold_s`, so a slow delivery never holds the
others' acks back and never fills the prefetch window.

Delivery tags belong to a channel. When the consume channel is reopened (robust reconnect),
tracking starts over on the new channel and tickets of the old one are ignored: the broker
redelivers their messages anyway, and a stale tag must never be acked on the new channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

from aiormq.abc import AbstractChannel

from shared.inbound import Inbound
from shared.logging import get_logger
from shared.supervision import spawn

log = get_logger("acks")

ACK_TICK_S = 0.005
"""How long finished tags wait to share a frame: a few ms, negligible next to a POST."""
ACK_HOLD_S = 0.02
"""How long a finished tag behind an unfinished one waits for a multiple ack first."""


@dataclass(frozen=True)
class AckPlan:
    """The frames to send for one tick: a multiple ack up to `upto` (if any), then singles."""

    upto: int | None
    singles: tuple[int, ...]


class AckTracker:
    """The tag bookkeeping of one channel (pure logic, no I/O).

    Tags are the broker's delivery tags, 1, 2, 3... in delivery order. A multiple ack only
    ever covers tags that were received and finished (or settled otherwise), so a tag the
    consumer has not seen yet is never acked.
    """

    def __init__(self, hold_s: float = ACK_HOLD_S) -> None:
        self._hold_s = hold_s
        self._base = 1
        """Every tag below it is settled (acked, nacked or forgotten)."""
        self._received: set[int] = set()
        self._finished: dict[int, float] = {}
        self._settled: set[int] = set()

    def received(self, tag: int) -> None:
        """A message with `tag` is in hand."""
        if tag >= self._base:
            self._received.add(tag)

    def finish(self, tag: int, now: float) -> None:
        """`tag`'s message is done: it may be acked from now on."""
        if tag in self._received:
            self._received.discard(tag)
            self._finished[tag] = now

    def forget(self, tag: int) -> None:
        """`tag` was settled by other means (a nack): never ack it, stop waiting for it."""
        if tag in self._received or tag in self._finished:
            self._received.discard(tag)
            self._finished.pop(tag, None)
            self._settled.add(tag)

    @property
    def waiting(self) -> int:
        """Finished tags not yet given out in a plan."""
        return len(self._finished)

    def take(self, now: float) -> AckPlan:
        """The acks to send now; the tags they cover count as acked from here on."""
        upto: int | None = None
        while True:
            if self._base in self._finished:
                del self._finished[self._base]
                upto = self._base
            elif self._base in self._settled:
                self._settled.discard(self._base)
            else:
                break
            self._base += 1
        # Whatever is still finished sits behind an unfinished (or unseen) tag.
        cutoff = now - self._hold_s
        singles = tuple(sorted(t for t, at in self._finished.items() if at <= cutoff))
        for tag in singles:
            del self._finished[tag]
            self._settled.add(tag)
        return AckPlan(upto, singles)


@dataclass(frozen=True)
class Ticket:
    """Which message `BatchAcker.finish` is told about: its channel and delivery tag."""

    channel: AbstractChannel
    tag: int


class BatchAcker:
    """Acks finished messages of the consume channel in batches, from a task of its own."""

    def __init__(
        self, tick_s: float = ACK_TICK_S, hold_s: float = ACK_HOLD_S, *, name: str = "acks"
    ) -> None:
        self._name = name
        self._tick_s = tick_s
        self._hold_s = hold_s
        self._channel: AbstractChannel | None = None
        self._tracker = AckTracker(hold_s)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = spawn(self._run(), name=self._name)

    async def close(self) -> None:
        """Send every ack that is due (call after the worker drained), then stop."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._flush(final=True)

    def received(self, message: Inbound) -> Ticket:
        """Track a consumed message; call before anything awaits, in consume order."""
        channel = message.channel
        if channel is not self._channel:
            # A new channel numbers its tags from 1 again: start over.
            self._channel = channel
            self._tracker = AckTracker(self._hold_s)
        ticket = Ticket(channel, message.delivery_tag or 0)
        self._tracker.received(ticket.tag)
        return ticket

    def finish(self, ticket: Ticket) -> None:
        """The message is done; it is acked within a tick or so."""
        if ticket.channel is self._channel:
            self._tracker.finish(ticket.tag, time.monotonic())
            self._wake.set()

    def forget(self, ticket: Ticket) -> None:
        """The message was nacked: it must never be covered by a multiple ack."""
        if ticket.channel is self._channel:
            self._tracker.forget(ticket.tag)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(self._tick_s)
            self._wake.clear()
            await self._flush(final=False)
            if self._tracker.waiting:
                self._wake.set()

    async def _flush(self, *, final: bool) -> None:
        channel = self._channel
        if channel is None:
            return
        plan = self._tracker.take(float("inf") if final else time.monotonic())
        if plan.upto is None and not plan.singles:
            return
        if channel.is_closed:
            # The broker requeues the channel's unacked messages; a reopened channel starts
            # its own tracking with its first message.
            return
        try:
            if plan.upto is not None:
                await channel.basic_ack(plan.upto, multiple=True)
            for tag in plan.singles:
                await channel.basic_ack(tag)
        except Exception as exc:
            # Unacked messages go back to the queue when the channel closes: sent again, never
            # lost.
            log.warning("acks_not_sent", error=f"{type(exc).__name__}: {exc}")
