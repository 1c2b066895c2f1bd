"""A target at its share: waiting for one of its slots, and who counts as waiting."""

from __future__ import annotations

import asyncio

from services.sender.limits import TargetLimits


async def test_a_waiter_is_woken_when_its_target_gives_a_slot_back() -> None:
    limits = TargetLimits(1)
    assert limits.try_acquire("t")
    waiting = asyncio.create_task(limits.wait_for_room("t", 10.0))
    await asyncio.sleep(0)
    assert limits.waiting("t") == 1
    limits.release("other")  # another target's slot wakes nobody here
    await asyncio.sleep(0)
    assert not waiting.done()
    limits.release("t")
    await asyncio.wait_for(waiting, 1.0)
    assert limits.waiting("t") == 0
    assert limits.try_acquire("t")


async def test_a_waiter_that_times_out_or_is_cancelled_leaves_the_queue() -> None:
    limits = TargetLimits(1)
    assert limits.try_acquire("t")
    await limits.wait_for_room("t", 0.01)  # nobody released: returns after the timeout
    assert limits.waiting("t") == 0
    cancelled = asyncio.create_task(limits.wait_for_room("t", 10.0))
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.gather(cancelled, return_exceptions=True)
    assert limits.waiting("t") == 0


async def test_room_is_there_at_once_below_the_share() -> None:
    limits = TargetLimits(2)
    assert limits.try_acquire("t")
    await asyncio.wait_for(limits.wait_for_room("t", 10.0), 0.1)
    assert limits.waiting("t") == 0
