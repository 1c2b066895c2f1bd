"""A real HTTP receiver for end-to-end tests: records every request, answers as scripted."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from tests.support import free_port


@dataclass(frozen=True)
class Received:
    """One request as the receiver saw it."""

    path: str
    headers: dict[str, str]
    """Header names in lower case."""
    body: bytes
    at: float
    """time.monotonic() on arrival."""

    @property
    def webhook_id(self) -> str:
        return self.headers.get("webhook-id", "")

    def json(self) -> dict[str, Any]:
        value: dict[str, Any] = orjson.loads(self.body)
        return value


Answer = Callable[[Received], int]


class Receiver:
    """Listens on 127.0.0.1; `script(path, ...)` decides the answers, `wait_for` awaits arrivals."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[Received] = []
        self._answers: dict[str, Answer] = {}
        self._delays_s: dict[str, float] = {}
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def script(self, path: str, answer: int | Answer, *, delay_s: float = 0.0) -> None:
        """Answer requests to `path` with a fixed status or a function of the request."""
        self._answers[path] = answer if callable(answer) else _fixed(answer)
        self._delays_s[path] = delay_s

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    async def wait_for(
        self, check: Callable[[list[Received]], bool], timeout_s: float = 30.0
    ) -> list[Received]:
        """Wait until `check(all requests so far)` holds; TimeoutError names what arrived."""
        try:
            async with asyncio.timeout(timeout_s):
                async with self._changed:
                    await self._changed.wait_for(lambda: check(self.received))
        except TimeoutError:
            seen = sorted({(r.path, r.webhook_id) for r in self.received})
            raise AssertionError(f"timed out after {timeout_s}s; received {seen}") from None
        return self.received

    async def _handle(self, request: web.Request) -> web.Response:
        record = Received(
            path=request.path,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=await request.read(),
            at=time.monotonic(),
        )
        delay_s = self._delays_s.get(request.path, 0.0)
        if delay_s:
            await asyncio.sleep(delay_s)
        status = self._answers.get(request.path, _fixed(200))(record)
        async with self._changed:
            self.received.append(record)
            self._changed.notify_all()
        return web.Response(status=status, text="ok" if status < 300 else "no")

    async def start(self) -> None:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def _fixed(status: int) -> Answer:
    def answer(_: Received) -> int:
        return status

    return answer
