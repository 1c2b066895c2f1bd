"""Concurrency per target: no subscription may hold more than its share of the sender's slots.

A receiver that hangs keeps each of its attempts for the whole delivery timeout. Without a
cap per subscription it would soon hold every slot and stall every other subscription (the
noisy neighbour of issue 6). With the cap, a delivery whose subscription already holds its
share is not made to wait (it would hold a prefetch slot while waiting); the worker parks it
in a retry queue instead.
"""

from __future__ import annotations

import time
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

    def stuck_for(self, target: str) -> float:
        """Seconds `target` has been refusing slots with no quick attempt; 0 when it is not."""
        spell = self._stuck.get(target)
        if spell is None:
            return 0.0
        now = self._clock()
        since, last = spell
        return 0.0 if now - last > self._stale_s else now - since

    def held(self, target: str) -> int:
        return self._inflight.get(target, 0)
