"""Many small writes as one: rows from concurrent callers gathered into one batched write.

A caller hands its rows to `BatchWriter.submit` and awaits it; the rows go out with whatever
other callers submitted within `max_delay_s` (or as soon as `max_rows` are waiting), in one
call of the write function — one `INSERT … SELECT FROM unnest(…)` or one `COPY` instead of a
query per message. `submit` returns only once its rows are written, so a caller can ack its
message after it; it returns what the write returned for the batch its rows were in (say,
which rows were new), from which the caller picks its own. While a write is running, new
rows keep gathering, so batches grow with the load by themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from shared.errors import HooklineError
from shared.logging import get_logger
from shared.metrics import DB_BATCH_SIZE
from shared.supervision import spawn

T = TypeVar("T")
R = TypeVar("R")

log = get_logger("batching")


class WriterClosed(HooklineError):
    """Rows were submitted to a batch writer that is closing."""


@dataclass(slots=True)
class _Group(Generic[T, R]):
    """The rows of one `submit` call, and the future its caller awaits."""

    rows: Sequence[T]
    done: asyncio.Future[R] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class BatchWriter(Generic[T, R]):
    """Gathers rows from concurrent `submit` calls into batched calls of `write`.

    `write(rows)` must write all rows or raise. When it raises an error for which
    `is_row_error(exc)` is true (a constraint violated by some row), each caller's rows are
    written again alone, so one bad row fails only its own caller; any other error fails
    every caller of that batch. `close()` writes what is waiting before it returns.
    """

    def __init__(
        self,
        write: Callable[[list[T]], Awaitable[R]],
        *,
        name: str,
        max_rows: int = 1000,
        max_delay_s: float = 0.005,
        concurrency: int = 2,
        is_row_error: Callable[[BaseException], bool] = lambda exc: False,
    ) -> None:
        self._write = write
        self._name = name
        self._max_rows = max_rows
        self._max_delay_s = max_delay_s
        self._cut_at = float("inf")
        """Loop time by which the gathering batch is cut at the latest (see `submit`)."""
        self._is_row_error = is_row_error
        self._slots = asyncio.Semaphore(concurrency)
        self._groups: list[_Group[T, R]] = []
        self._row_count = 0
        self._has_rows = asyncio.Event()
        self._full = asyncio.Event()
        self._hurry = asyncio.Event()
        """Set when a row with its own, shorter delay arrived: the linger looks again."""
        self._writes: set[asyncio.Task[None]] = set()
        self._closing = False
        self._loop_task: asyncio.Task[None] | None = None
        self._batch_size = DB_BATCH_SIZE.labels(name)

    def start(self) -> None:
        """Start the task that cuts batches; call once, inside the running loop."""
        self._loop_task = spawn(self._run(), name=f"batch-writer-{self._name}")

    async def submit(self, rows: Sequence[T], *, max_delay_s: float | None = None) -> R | None:
        """Write `rows` in the next batch; returns once they are written (with what the write
        returned for their batch; None for no rows), else raises. `max_delay_s` caps how long
        these rows wait for others below the writer's own (for a caller waiting on an answer).

        Raises WriterClosed after `close()` began, or what the write raised.
        """
        if self._closing:
            raise WriterClosed(f"batch writer {self._name} is closing")
        if not rows:
            return None
        group: _Group[T, R] = _Group(rows)
        if max_delay_s is not None:
            cut_at = asyncio.get_running_loop().time() + max_delay_s
            if cut_at < self._cut_at:
                self._cut_at = cut_at
                self._hurry.set()
        self._groups.append(group)
        self._row_count += len(rows)
        self._has_rows.set()
        if self._row_count >= self._max_rows:
            self._full.set()
        # Shielded: a cancelled caller must not cancel the write the others wait for.
        return await asyncio.shield(group.done)

    async def close(self) -> None:
        """Refuse new rows, write the waiting ones, wait for the writes in flight, stop."""
        self._closing = True
        self._full.set()
        self._has_rows.set()
        if self._loop_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await self._has_rows.wait()
            if not self._full.is_set() and self._max_delay_s > 0:
                # Linger briefly: rows of other callers arriving meanwhile share the write.
                await self._linger()
            await self._slots.acquire()
            groups, self._groups = self._groups, []
            self._cut_at = float("inf")
            self._hurry.clear()
            self._row_count = 0
            self._has_rows.clear()
            self._full.clear()
            if groups:
                task = asyncio.create_task(self._write_groups(groups), name=f"batch-{self._name}")
                self._writes.add(task)
                task.add_done_callback(self._writes.discard)
            else:
                self._slots.release()
            if self._closing and not self._groups:
                return

    async def _linger(self) -> None:
        """Until the batch is full or its time is up: `max_delay_s` after its first row, or
        sooner when a row asked for less."""
        loop = asyncio.get_running_loop()
        cut_at = loop.time() + self._max_delay_s
        while not self._full.is_set():
            left = min(cut_at, self._cut_at) - loop.time()
            if left <= 0:
                return
            self._hurry.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_first(self._full, self._hurry), left)

    async def _write_groups(self, groups: list[_Group[T, R]]) -> None:
        try:
            rows = [row for group in groups for row in group.rows]
            try:
                result = await self._write(rows)
                self._batch_size.observe(len(rows))
            except Exception as exc:
                if len(groups) > 1 and self._is_row_error(exc):
                    await self._write_alone(groups)
                    return
                _fail(groups, exc)
                return
            _succeed(groups, result)
        finally:
            self._slots.release()

    async def _write_alone(self, groups: list[_Group[T, R]]) -> None:
        log.warning("batch_write_split", writer=self._name, groups=len(groups))
        for group in groups:
            try:
                result = await self._write(list(group.rows))
                self._batch_size.observe(len(group.rows))
            except Exception as exc:
                _fail([group], exc)
            else:
                _succeed([group], result)


async def _first(*events: asyncio.Event) -> None:
    """Return once any of `events` is set."""
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


def _succeed(groups: list[_Group[T, R]], result: R) -> None:
    for group in groups:
        if not group.done.done():
            group.done.set_result(result)


def _fail(groups: list[_Group[T, R]], exc: BaseException) -> None:
    for group in groups:
        if group.done.done():
            continue
        group.done.set_exception(exc)
        # Mark it retrieved: a caller cancelled meanwhile would leave it unread.
        group.done.add_done_callback(lambda f: f.exception())
