"""The sender's global bound on attempts in flight: a FIFO semaphore with O(1) acquire.

`asyncio.Semaphore.acquire` (Python 3.11) calls `locked()`, which scans every waiter; the
sender keeps many deliveries waiting (its prefetched messages, each a batch of up to an
event's matches, minus the slots in use: thousands), so each acquire cost a scan of hundreds
of futures (~4% of the sender's CPU in the fanout
bench). This one keeps a free count and a queue of waiters, and hands a freed slot straight
to the oldest waiter.
"""

from __future__ import annotations

import asyncio
from collections import deque
from types import TracebackType


class Slots:
    """`async with slots:` holds one of `size` slots; waiters get them in arrival order."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("at least one slot is needed")
        self._free = size
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def free(self) -> int:
        """Slots nobody holds (0 while anyone waits)."""
        return self._free

    async def acquire(self) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            # Cancelled after a slot was handed over but before it resumed: pass it on, or it
            # would be lost. A waiter cancelled while still queued is skipped by `release`.
            if waiter.done() and not waiter.cancelled():
                self.release()
            raise

    def release(self) -> None:
        """Give a held slot back (to the oldest live waiter, if any)."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class Budget:
    """Units (deliveries in hand) taken and given back in amounts, first come first served.

    Prefetch counts messages, and a batch message carries up to an event's matches (a
    thousand, say): without a bound on deliveries, 1,024 prefetched batches could put a
    million deliveries, each a coroutine, in memory at once. A message waits here before it is
    expanded, holding only its unacked body. An amount larger than the whole budget takes
    all of it (it waits until every other holder is done), so no message waits forever.
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("the budget must hold at least one unit")
        self._size = size
        self._free = size
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    @property
    def free(self) -> int:
        return self._free

    async def acquire(self, amount: int) -> int:
        """Take `amount` units (at most the whole budget); returns what was taken, to be
        given back with `release`."""
        amount = max(1, min(amount, self._size))
        if not self._waiters and self._free >= amount:
            self._free -= amount
            return amount
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((amount, waiter))
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release(amount)  # granted, then cancelled before it resumed
            else:
                self._grant()  # it may have been the one the others waited behind
            raise
        return amount

    def release(self, amount: int) -> None:
        self._free += amount
        self._grant()

    def _grant(self) -> None:
        while self._waiters:
            amount, waiter = self._waiters[0]
            if waiter.done():
                self._waiters.popleft()
                continue
            if amount > self._free:
                return
            self._waiters.popleft()
            self._free -= amount
            waiter.set_result(None)
