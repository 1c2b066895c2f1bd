"""Concurrency per target: no subscription may hold more than its share of the sender's slots.

A receiver that hangs keeps each of its attempts for the whole delivery timeout. Without a
cap per subscription it would soon hold every slot and stall every other subscription (the
noisy neighbour of issue 6). With the cap, a delivery whose subscription already holds its
share waits for one of its slots only while the target is healthy (`wait_for_room`: its
attempts come back within SLOW_S, so its slots free up within milliseconds, as when one
tenant's events arrive in one batch); one of a stuck or slow target is deferred to a retry
queue instead, where it holds no room in the sender.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import Callable

SLOW_S = 1.0
"""A target whose attempts take longer than this (a moving average) is not waited for."""
WATCH_S = 0.5
"""How often a target with waiters is checked for being stuck or slow (they are then
told to defer)."""
_EWMA_WEIGHT = 0.2
MAX_AVERAGES = 10_000
"""Targets whose moving average is kept, the least recently attempted dropped first: the
sender may deliver to a million subscriptions over time, and needs only its current ones'."""


class TargetLimits:
    """Counts attempts in flight per subscription; `try_acquire` never waits.

    It also tells how long a target has been *stuck*: refusing slots while none of its
    attempts came back quickly. A busy but healthy target frees slots fast and is never
    stuck; a hanging one frees them only at the delivery timeout, and its backlog can then
    be deferred for longer from its first deferral on, instead of cycling through the broker.
    """

    def __init__(
        self, per_target: int, *, quick_s: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if per_target < 1:
            raise ValueError("each target needs at least one slot")
        self._per_target = per_target
        self._quick_s = quick_s
        # A refusal this long after the previous one starts a new stuck spell.
        self._stale_s = 4 * quick_s
        self._clock = clock
        self._inflight: dict[str, int] = {}
        self._stuck: dict[str, tuple[float, float]] = {}
        """target -> (first refusal of this spell, latest refusal)."""
        self._room_waiters: dict[str, deque[asyncio.Future[bool]]] = {}
        self._waiting: dict[str, int] = {}
        self._watches: dict[str, asyncio.TimerHandle] = {}
        self._duration_s: OrderedDict[str, float] = OrderedDict()
        """target -> moving average of its attempts' durations."""

    def try_acquire(self, target: str) -> bool:
        """Take a slot for `target`; False (and nothing taken) when it holds its share."""
        held = self._inflight.get(target, 0)
        if held >= self._per_target:
            now = self._clock()
            since, last = self._stuck.get(target, (now, now))
            self._stuck[target] = (now if now - last > self._stale_s else since, now)
            return False
        self._inflight[target] = held + 1
        return True

    def release(self, target: str, took_s: float = 0.0) -> None:
        """Give back a slot taken by `try_acquire`; `took_s` is how long its attempt took."""
        if took_s < self._quick_s:
            self._stuck.pop(target, None)
        averages = self._duration_s
        average = averages.get(target, took_s)
        averages[target] = average + _EWMA_WEIGHT * (took_s - average)
        averages.move_to_end(target)
        if len(averages) > MAX_AVERAGES:
            averages.popitem(last=False)
        held = self._inflight.get(target, 0)
        if held <= 1:
            self._inflight.pop(target, None)
        else:
            self._inflight[target] = held - 1
        waiters = self._room_waiters.get(target)
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(True)
                break

    def slow(self, target: str) -> bool:
        """Whether `target`'s recent attempts took longer than SLOW_S on average."""
        return self._duration_s.get(target, 0.0) > SLOW_S

    async def wait_for_room(self, target: str) -> bool:
        """Wait until a slot of `target` is given back: True (`try_acquire` may still be
        refused when another caller took it first); False when the target turned out stuck
        (refusing for WATCH_S with no quick attempt) or slow meanwhile: defer instead.

        O(1) per waiter: one timer per target checks it every WATCH_S while it has waiters.
        """
        if self._inflight.get(target, 0) < self._per_target:
            return True
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._room_waiters.setdefault(target, deque()).append(waiter)
        self._waiting[target] = self._waiting.get(target, 0) + 1
        if target not in self._watches:
            self._watch(target)
        try:
            return await waiter
        finally:
            left = self._waiting[target] - 1
            if left:
                self._waiting[target] = left
            else:
                del self._waiting[target]

    def _watch(self, target: str) -> None:
        loop = asyncio.get_running_loop()
        self._watches[target] = loop.call_later(WATCH_S, self._check, target)

    def _check(self, target: str) -> None:
        del self._watches[target]
        waiters = self._room_waiters.get(target)
        if not self._waiting.get(target) or waiters is None:
            self._room_waiters.pop(target, None)
            return
        if self.stuck_for(target) > WATCH_S or self.slow(target):
            del self._room_waiters[target]
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(False)
            return
        self._watch(target)

    def stuck_for(self, target: str) -> float:
        """Seconds `target` has been refusing slots with no quick attempt; 0 when it is not."""
        spell = self._stuck.get(target)
        if spell is None:
            return 0.0
        now = self._clock()
        since, last = spell
        return 0.0 if now - last > self._stale_s else now - since

    def waiting(self, target: str) -> int:
        """Callers in `wait_for_room` for `target` now."""
        return self._waiting.get(target, 0)

    @property
    def averages_kept(self) -> int:
        """Targets whose moving average is remembered (at most MAX_AVERAGES)."""
        return len(self._duration_s)

    def held(self, target: str) -> int:
        return self._inflight.get(target, 0)
