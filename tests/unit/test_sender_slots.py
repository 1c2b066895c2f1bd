"""The sender's slot bound: never more holders than slots, FIFO, no slot lost to cancellation."""

from __future__ import annotations

import asyncio

import pytest

from services.sender.slots import Slots


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
