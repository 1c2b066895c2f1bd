"""A target at its share: waiting for one of its slots while it is healthy, not once stuck."""

from __future__ import annotations

import asyncio

import pytest

from services.sender import limits as limits_module
from services.sender.limits import TargetLimits


async def test_a_waiter_is_woken_when_its_target_gives_a_slot_back() -> None:
    limits = TargetLimits(1)
    assert limits.try_acquire("t")
    waiting = asyncio.create_task(limits.wait_for_room("t"))
    await asyncio.sleep(0)
    assert limits.waiting("t") == 1
    limits.release("other")  # another target's slot wakes nobody here
    await asyncio.sleep(0)
    assert not waiting.done()
    limits.release("t", took_s=0.01)
    assert await asyncio.wait_for(waiting, 1.0) is True
    assert limits.waiting("t") == 0
    assert limits.try_acquire("t")


async def test_waiters_of_a_stuck_target_are_told_to_defer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(limits_module, "WATCH_S", 0.05)
    limits = TargetLimits(1, quick_s=10.0)
    assert limits.try_acquire("t")
    assert not limits.try_acquire("t")  # refused: a stuck spell starts
    waiters = [asyncio.create_task(limits.wait_for_room("t")) for _ in range(3)]
    # Nothing comes back: after a watch or two the spell is older than WATCH_S.
    assert await asyncio.wait_for(asyncio.gather(*waiters), 2.0) == [False] * 3
    assert limits.waiting("t") == 0


async def test_a_slow_target_is_not_waited_for_and_cancelled_waiters_do_not_count() -> None:
    limits = TargetLimits(1, quick_s=10.0)
    assert limits.try_acquire("t")
    limits.release("t", took_s=limits_module.SLOW_S * 3)
    assert limits.slow("t")
    assert limits.try_acquire("t")
    cancelled = asyncio.create_task(limits.wait_for_room("t"))
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.gather(cancelled, return_exceptions=True)
    assert limits.waiting("t") == 0
    assert await asyncio.wait_for(TargetLimits(2).wait_for_room("t"), 0.1) is True


def test_what_is_remembered_per_target_stays_bounded_over_a_million_targets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(limits_module, "MAX_AVERAGES", 100)
    limits = TargetLimits(1)
    limits.release("slow", took_s=limits_module.SLOW_S * 3)
    for i in range(1_000):
        assert limits.try_acquire(f"sub_{i}")
        limits.release(f"sub_{i}", took_s=0.01)
        if i % 50 == 0:
            limits.release("slow", took_s=limits_module.SLOW_S * 3)  # attempted now and then
    assert limits.averages_kept == 100
    assert limits.slow("slow")  # recently attempted: still known to be slow
    assert limits.held("sub_999") == 0
