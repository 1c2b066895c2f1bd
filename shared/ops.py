"""Each service's ops HTTP server: `/metrics`, `/healthz`, `/readyz` (CONTRACT section 5)."""

from __future__ import annotations

import time
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shared.metrics import REGISTRY

ReadyCheck = Callable[[], bool]


class Readiness:
    """Named readiness checks; ready only while every one holds.

    In a process running several components (`hookline all`), each gets its own `scope`:
    the process is not ready until every component has registered its checks, which each
    does once it is fully started, so one component's green checks cannot make the process
    look ready while another is still starting (its API not yet listening, say).
    """

    def __init__(self, checks: dict[str, ReadyCheck] | None = None) -> None:
        self._checks: dict[str, ReadyCheck] = {} if checks is None else checks
        self._scopes: dict[str, Readiness] = {}
        self._registered = False

    def scope(self, component: str) -> Readiness:
        """The readiness a component registers into; it shares this object's checks."""
        child = Readiness(self._checks)
        self._scopes[component] = child
        return child

    def add(self, name: str, check: ReadyCheck) -> None:
        self._checks[name] = check
        self._registered = True

    def status(self) -> dict[str, bool]:
        found = {name: bool(check()) for name, check in self._checks.items()}
        for component, scope in self._scopes.items():
            if not scope._registered:
                found[f"{component}_started"] = False
        return found


class Liveness:
    """Whether the process has been unable to restore something for longer than `bound_s`.

    Every readiness check stands for a connection, a consumer or a component start: one that
    has been false without a break for more than `bound_s` means the process keeps failing
    to restore it, and `/healthz` answers 503 so that a supervisor (Kubernetes' liveness
    probe) restarts it. `sample` must run often (the ops server's monitor does, once a
    second); a check that comes back true in between resets its clock.
    """

    def __init__(
        self, readiness: Readiness, bound_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._readiness = readiness
        self.bound_s = bound_s
        self._clock = clock
        self._false_since: dict[str, float] = {}

    def sample(self) -> dict[str, float]:
        """Look at every check now; returns how long each false one has been false (s)."""
        now = self._clock()
        down: dict[str, float] = {}
        for name, ok in self._readiness.status().items():
            if ok:
                self._false_since.pop(name, None)
                continue
            since = self._false_since.setdefault(name, now)
            down[name] = now - since
        for name in set(self._false_since) - set(down):
            del self._false_since[name]
        return down

    def overdue(self) -> dict[str, float]:
        """The checks false for longer than the bound, with for how long (s)."""
        return {name: s for name, s in self.sample().items() if s > self.bound_s}


def ops_app(readiness: Readiness, liveness: Liveness | None = None) -> web.Application:
    async def metrics(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def healthz(_: web.Request) -> web.Response:
        overdue = liveness.overdue() if liveness is not None else {}
        if overdue:
            return web.json_response(
                {
                    "status": "unhealthy",
                    "bound_s": liveness.bound_s if liveness is not None else None,
                    "down_s": {name: round(s, 1) for name, s in overdue.items()},
                },
                status=503,
            )
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        checks = readiness.status()
        ok = bool(checks) and all(checks.values())
        return web.json_response(
            {"status": "ready" if ok else "not_ready", "checks": checks},
            status=200 if ok else 503,
        )

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


async def start_site(
    app: web.Application, host: str, port: int, *, reuse_port: bool = False
) -> web.AppRunner:
    """Serve `app` until the returned runner is cleaned up; with `reuse_port` (SO_REUSEPORT)
    several processes listen on the same port and the kernel spreads connections over them."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True, reuse_port=reuse_port or None)
    await site.start()
    return runner
