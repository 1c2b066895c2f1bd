"""Several ingest processes on one port: the API site can listen with SO_REUSEPORT."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web

from shared.ops import start_site
from tests.support import free_port


def _app(name: str) -> web.Application:
    async def who(_: web.Request) -> web.Response:
        return web.Response(text=name)

    app = web.Application()
    app.router.add_get("/", who)
    return app


async def test_two_sites_share_a_port_with_reuse_port_and_both_answer() -> None:
    port = free_port()
    first = await start_site(_app("a"), "127.0.0.1", port, reuse_port=True)
    second = await start_site(_app("b"), "127.0.0.1", port, reuse_port=True)
    try:
        seen: set[str] = set()
        for _ in range(40):
            # A new connection each time: the kernel spreads connections over listeners.
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{port}/") as answer:
                    seen.add(await answer.text())
            if seen == {"a", "b"}:
                break
        assert seen == {"a", "b"}  # 40 connections all to one listener: 1 in 2**39
    finally:
        await first.cleanup()
        await second.cleanup()


async def test_without_it_a_second_site_on_the_port_is_refused() -> None:
    port = free_port()
    first = await start_site(_app("a"), "127.0.0.1", port)
    try:
        with pytest.raises(OSError):
            await start_site(_app("b"), "127.0.0.1", port)
    finally:
        await first.cleanup()
