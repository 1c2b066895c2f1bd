"""Running services: signals set a stop event, the ops server, and the supervision of components.

A component is `async def run(settings, stop, readiness)`: it sets itself up, registers its
readiness checks, serves until `stop` is set, then drains its in-flight work and returns.
`serve` runs one or more components in one process (`hookline all` runs three) with one ops
server, and stops them all when any of them dies.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from shared import supervision
from shared.logging import configure_logging, get_logger
from shared.ops import Liveness, Readiness, ops_app, start_site
from shared.sampler import sampler
from shared.settings import Settings

Component = Callable[[Settings, asyncio.Event, Readiness], Coroutine[Any, Any, None]]

log = get_logger("runtime")


def _install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


async def serve(
    settings: Settings,
    service: str,
    components: Sequence[tuple[str, Component]],
    stop: asyncio.Event | None = None,
) -> int:
    """Run the components until `stop` (by default SIGTERM/SIGINT) or until one fails.

    Returns the process exit code: 0 after a clean stop, 1 when a component or a supervised
    side task (`shared.supervision.spawn`) failed.
    """
    if stop is None:
        stop = asyncio.Event()
        _install_signal_handlers(stop)
    readiness = Readiness()
    liveness = Liveness(readiness, settings.liveness_bound)
    supervisor = supervision.Supervisor()
    token = supervision.install(supervisor)
    port = settings.metrics_port_for(service)
    runner = await start_site(ops_app(readiness, liveness), settings.metrics_host, port)
    log.info("service_starting", service=service, metrics_port=port)
    components = [*components, sampler(service)]  # backlog metrics (shared.sampler)
    tasks = [
        asyncio.create_task(component(settings, stop, readiness.scope(name)), name=name)
        for name, component in components
    ]
    monitor = asyncio.create_task(_monitor(liveness, supervisor, stop), name="ops-monitor")
    try:
        failed = await _wait_components(tasks, stop)
    finally:
        monitor.cancel()
        for task in tasks:
            task.cancel()
        await runner.cleanup()
        supervision.uninstall(token)
    failed = failed or supervisor.failed.is_set()
    log.info("service_stopped", service=service, failed=failed)
    return 1 if failed else 0


async def _wait_components(tasks: list[asyncio.Task[None]], stop: asyncio.Event) -> bool:
    """Wait for every component; True when one of them failed."""
    failed = False
    pending: set[asyncio.Task[None]] = set(tasks)
    while pending:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            exc = task.exception()
            if exc is not None:
                failed = True
                log.error(
                    "component_failed",
                    component=task.get_name(),
                    error=f"{type(exc).__name__}: {exc}",
                    exc_info=exc,
                )
            # Any component that returns or dies takes the others down with it:
            # a half-running service would look alive and do nothing.
            stop.set()
    return failed


MONITOR_INTERVAL_S = 1.0


async def _monitor(
    liveness: Liveness, supervisor: supervision.Supervisor, stop: asyncio.Event
) -> None:
    """Sample liveness once a second (logging when the bound is passed), and stop the process
    when a supervised side task died."""
    interval_s = min(MONITOR_INTERVAL_S, max(liveness.bound_s / 4, 0.05))
    reported: set[str] = set()
    while True:
        try:
            await asyncio.wait_for(supervisor.failed.wait(), interval_s)
        except TimeoutError:
            overdue = liveness.overdue()
            for name in set(overdue) - reported:
                log.error("liveness_bound_exceeded", check=name, down_s=round(overdue[name], 1))
            reported = set(overdue)
            continue
        name, exc = supervisor.failures[0]
        log.error("service_stopping_after_task_failure", task=name, error=repr(exc))
        stop.set()
        return


async def drain_tasks(tasks: set[asyncio.Task[Any]], grace_s: float) -> int:
    """Wait up to `grace_s` for the handlers in `tasks`, then cancel the rest and wait for them.

    Returns how many were cancelled. A cancelled handler has not acked its message, so the
    broker delivers it again: shutting down within the grace never loses work.
    """
    pending = set(tasks)
    if not pending:
        return 0
    _, late = await asyncio.wait(pending, timeout=grace_s)
    for task in late:
        task.cancel()
    if late:
        await asyncio.wait(late)
    return len(late)


GC_GEN0_THRESHOLD = 50_000
"""Allocations between young-generation collections (CPython's default is 700)."""


def tune_gc() -> None:
    """Collect the young generation less often, and never scan what was loaded at start.

    Every message makes a few dozen short-lived objects (frames, futures, dicts); with the
    default threshold the collector runs every few messages and walks every live object of
    the young generation each time. Objects made at import time (modules, classes, settings)
    are moved out of the collector's sight with `gc.freeze`. Garbage cycles are still
    collected, just in larger sweeps.
    """
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


def run_service(service: str, components: Sequence[tuple[str, Component]]) -> int:
    """Entry point of a service process: settings, logging, the fast loop, then `serve`."""
    from shared.settings import load_settings

    settings = load_settings()
    configure_logging(settings.log_format, settings.log_level)
    tune_gc()
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency where it builds
        return asyncio.run(serve(settings, service, components))
    if sys.version_info >= (3, 12):  # pragma: no cover
        return uvloop.run(serve(settings, service, components))  # type: ignore[no-any-return]
    uvloop.install()
    return asyncio.run(serve(settings, service, components))
