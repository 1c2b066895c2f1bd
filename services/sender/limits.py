"""Concurrency per target: no subscription may hold more than its share of the sender's slots.

A receiver that hangs keeps each of its attempts for the whole delivery timeout. Without a
cap per subscription it would soon hold every slot and stall every other subscription (the
noisy neighbour of issue 6). With the cap, a delivery whose subscription already holds its
share waits briefly only when the target is healthy (`wait_for_room`; its slots come back
within milliseconds); one of a stuck target is parked in a retry queue instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable


class TargetLimits:
    """Counts attempts in flight per subscription; `try_acquire` never waits.

    It also tells how long a target has been *stuck*: refusing slots while none of its
    attempts came back quickly. A busy but healthy target frees slots fast and is never
    stuck; a hanging one frees them only at the delivery timeout, and its backlog can then
    be parked for longer from its first deferral on, instead of cycling through the broker.
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
        self._room_waiters: dict[str, deque[asyncio.Future[None]]] = {}

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
        held = self._inflight.get(target, 0)
        if held <= 1:
            self._inflight.pop(target, None)
        else:
            self._inflight[target] = held - 1
        waiters = self._room_waiters.get(target)
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break
        if not waiters:
            self._room_waiters.pop(target, None)

    async def wait_for_room(self, target: str, timeout_s: float) -> None:
        """Return once a slot of `target` was given back (or at once if one is free), or after
        `timeout_s`; `try_acquire` may still be refused when another caller took it first."""
        if self._inflight.get(target, 0) < self._per_target:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters = self._room_waiters.setdefault(target, deque())
        waiters.append(waiter)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter, timeout_s)
        finally:
            if not waiter.done() or waiter.cancelled():
                # Timed out or cancelled: leave the queue, so `waiting` counts only the live.
                with contextlib.suppress(ValueError):
                    waiters.remove(waiter)
                if not waiters and self._room_waiters.get(target) is waiters:
                    del self._room_waiters[target]

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
        waiters = self._room_waiters.get(target)
        return len(waiters) if waiters else 0

    def held(self, target: str) -> int:
        return self._inflight.get(target, 0)
