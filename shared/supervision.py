"""Supervised background tasks: a side task that dies stops the process with a non-zero exit.

The model is procrastinate's worker: every long-lived task of a service (the acker, the batch
writers, the attempt log, the cache listeners, the sweepers, the consumers) is started with
`spawn` and has a name. `shared.runtime.serve` installs a `Supervisor` in the context its
components run in; tasks created inside inherit it (asyncio copies the context into each new
task), so `spawn` needs no object passed down. A task that ends with an exception is logged
(`side_task_failed`) and reported to the supervisor, which stops the whole process: a service
running without its acker or its attempt log would look alive and do nothing. A task that is
cancelled (its owner closing it) or returns is not a failure.

Outside `serve` (unit tests building one object alone) there is no supervisor: the failure is
still logged.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine
from typing import Any, TypeVar

from shared.logging import get_logger

log = get_logger("supervision")

T = TypeVar("T")


class Supervisor:
    """Collects the first side-task failure of a process; `failed` is set once one died."""

    def __init__(self) -> None:
        self.failed = asyncio.Event()
        self.failures: list[tuple[str, BaseException]] = []

    def report(self, name: str, exc: BaseException) -> None:
        self.failures.append((name, exc))
        self.failed.set()


_current: contextvars.ContextVar[Supervisor | None] = contextvars.ContextVar(
    "hookline_supervisor", default=None
)


def install(supervisor: Supervisor) -> contextvars.Token[Supervisor | None]:
    """Make `supervisor` watch every task spawned from this context on."""
    return _current.set(supervisor)


def uninstall(token: contextvars.Token[Supervisor | None]) -> None:
    _current.reset(token)


def spawn(coro: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
    """`asyncio.create_task` under supervision: if the task dies, the process stops (exit 1)."""
    task = asyncio.create_task(coro, name=name)
    watch(task)
    return task


def watch(task: asyncio.Task[Any]) -> None:
    """Supervise a task created elsewhere."""
    supervisor = _current.get()
    task.add_done_callback(lambda done: _ended(done, supervisor))


def _ended(task: asyncio.Task[Any], supervisor: Supervisor | None) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is None:
        return
    log.error(
        "side_task_failed",
        task=task.get_name(),
        error=f"{type(exc).__name__}: {exc}",
        exc_info=exc,
    )
    if supervisor is not None:
        supervisor.report(task.get_name(), exc)
