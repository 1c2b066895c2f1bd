"""The sender's slot bound: never more holders than slots, FIFO, no slot lost to cancellation."""

from __future__ import annotations

import asyncio

import pytest

from services.sender.slots import Budget, Slots


async def test_never_more_holders_than_slots_and_all_finish() -> None:
    slots = Slots(3)
    holding = 0
    most = 0
    order: list[int] = []

    async def work(i: int) -> None:
        nonlocal holding, most
        async with slots:
            holding += 1
            most = max(most, holding)
            order.append(i)
            await asyncio.sleep(0.001)
            holding -= 1

    await asyncio.gather(*(work(i) for i in range(50)))
    assert most == 3
    assert order == list(range(50))
    assert slots.free == 3


async def test_a_cancelled_waiter_loses_no_slot() -> None:
    slots = Slots(1)
    await slots.acquire()
    queued = asyncio.create_task(slots.acquire())
    handed = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)
    queued.cancel()  # cancelled while still waiting
    await asyncio.sleep(0)
    slots.release()  # goes to `handed`...
    handed.cancel()  # ...which is cancelled before it resumes: the slot must come back
    for task in (queued, handed):
        with pytest.raises(asyncio.CancelledError):
            await task
    assert slots.free == 1
    async with asyncio.timeout(1):
        await slots.acquire()


def test_needs_a_slot() -> None:
    with pytest.raises(ValueError):
        Slots(0)


async def test_the_budget_bounds_units_in_hand_first_come_first_served() -> None:
    budget = Budget(10)
    in_hand = 0
    most = 0
    order: list[int] = []

    async def hold(name: int, amount: int) -> None:
        nonlocal in_hand, most
        taken = await budget.acquire(amount)
        order.append(name)
        in_hand += taken
        most = max(most, in_hand)
        await asyncio.sleep(0.01)
        in_hand -= taken
        budget.release(taken)

    # 6 waits for 4 + 3 to leave room; 2 must not jump the queue ahead of it.
    await asyncio.gather(hold(0, 4), hold(1, 3), hold(2, 6), hold(3, 2))
    assert most <= 10
    assert order == [0, 1, 2, 3]
    assert budget.free == 10


async def test_an_amount_larger_than_the_budget_takes_all_of_it_and_is_not_stuck() -> None:
    budget = Budget(3)
    first = await budget.acquire(2)
    big = asyncio.create_task(budget.acquire(50))
    await asyncio.sleep(0)
    assert not big.done()
    budget.release(first)
    assert await asyncio.wait_for(big, 1) == 3
    assert budget.free == 0
    budget.release(3)
    assert budget.free == 3


async def test_a_cancelled_waiter_at_the_front_lets_the_next_one_in() -> None:
    budget = Budget(4)
    held = await budget.acquire(3)
    blocked = asyncio.create_task(budget.acquire(4))
    small = asyncio.create_task(budget.acquire(1))
    await asyncio.sleep(0)
    assert not small.done()  # behind the one waiting for 4
    blocked.cancel()
    assert await asyncio.wait_for(small, 1) == 1
    budget.release(held)
    budget.release(1)
    assert budget.free == 4
