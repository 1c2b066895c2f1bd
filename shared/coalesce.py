"""One database round trip for the keys many concurrent callers ask for (the caches' loads).

A caller's keys join the next load, which starts once the one in flight has answered: every
caller waiting meanwhile shares it, so N concurrent cache misses cost one query, not N. A
load always starts after its callers asked, so what it reads is at least as fresh as their
request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Hashable
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _Wave(Generic[K, V]):
    """The keys of one load and the future its callers wait on."""

    def __init__(self) -> None:
        self.keys: dict[K, None] = {}
        self.done: asyncio.Future[dict[K, V]] = asyncio.get_running_loop().create_future()
        # A caller cancelled meanwhile must not leave an error nobody retrieved.
        self.done.add_done_callback(_retrieve)


class Coalescer(Generic[K, V]):
    """Runs `load(keys)` one call at a time, each for every key asked for since the last.

    `load` returns a value per key it found; keys it did not find are simply absent. An
    exception of `load` is raised to every caller of that call.
    """

    def __init__(self, load: Callable[[list[K]], Awaitable[dict[K, V]]], *, name: str) -> None:
        self._load = load
        self._name = name
        self._next: _Wave[K, V] | None = None
        self._task: asyncio.Task[None] | None = None
        self.loads = 0
        """How many loads ran (for tests and metrics)."""

    async def get(self, keys: Collection[K]) -> dict[K, V]:
        """The values `load` found for `keys`, read by a load that started after this call."""
        if not keys:
            return {}
        wave = self._next
        if wave is None:
            wave = self._next = _Wave()
        wave.keys.update(dict.fromkeys(keys))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=self._name)
        # Shielded: one caller cancelled must not cancel the load the others wait for.
        found = await asyncio.shield(wave.done)
        return {k: found[k] for k in keys if k in found}

    async def close(self) -> None:
        """Cancel the load in flight; its callers and those waiting get CancelledError."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        wave, self._next = self._next, None
        if wave is not None and not wave.done.done():
            wave.done.cancel()

    async def _run(self) -> None:
        while (wave := self._next) is not None:
            self._next = None
            try:
                found = await self._load(list(wave.keys))
            except asyncio.CancelledError:
                wave.done.cancel()
                raise
            except Exception as exc:
                wave.done.set_exception(exc)
                continue
            self.loads += 1
            wave.done.set_result(found)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
