"""Concurrency per target: no subscription may hold more than its share of the sender's slots.

A receiver that hangs keeps each of its attempts for the whole delivery timeout. Without a
cap per subscription it would soon hold every slot and stall every other subscription (the
noisy neighbour of issue 6). With the cap, a delivery whose subscription already holds its
share is not made to wait (it would hold a prefetch slot while waiting); the worker parks it
in a retry queue instead.
"""

from __future__ import annotations


class TargetLimits:
    """Counts attempts in flight per subscription; `try_acquire` never waits."""

    def __init__(self, per_target: int) -> None:
        if per_target < 1:
            raise ValueError("each target needs at least one slot")
        self._per_target = per_target
        self._inflight: dict[str, int] = {}

    def try_acquire(self, target: str) -> bool:
        """Take a slot for `target`; False (and nothing taken) when it holds its share."""
        held = self._inflight.get(target, 0)
        if held >= self._per_target:
            return False
        self._inflight[target] = held + 1
        return True

    def release(self, target: str) -> None:
        """Give back a slot taken by `try_acquire`."""
        held = self._inflight.get(target, 0)
        if held <= 1:
            self._inflight.pop(target, None)
        else:
            self._inflight[target] = held - 1

    def held(self, target: str) -> int:
        return self._inflight.get(target, 0)
