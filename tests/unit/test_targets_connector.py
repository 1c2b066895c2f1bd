"""The guard inside a real aiohttp client: refused targets are never connected to."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from shared.errors import TargetRefused
from shared.targets import (
    GuardedResolver,
    TargetPolicy,
    check_target,
    guarded_connector,
    refusal_in,
)
from tests.support import free_port

GUARD_ON = TargetPolicy(allow_private=False, allowed_networks=())
GUARD_OFF = TargetPolicy(allow_private=True, allowed_networks=())


class LiveServer:
    """A local HTTP server that counts the requests it receives."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.hits = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.hits += 1
        return web.Response(text="ok")


@pytest.fixture
async def server() -> AsyncIterator[LiveServer]:
    live = LiveServer(free_port())
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", live.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", live.port).start()
    yield live
    await runner.cleanup()


class ScriptedResolver(AbstractResolver):
    """Answers each lookup with the next address of a script (a DNS rebinding attacker)."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.lookups = 0

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        address = self.answers[min(self.lookups, len(self.answers) - 1)]
        self.lookups += 1
        return [
            ResolveResult(
                hostname=host, host=address, port=port, family=socket.AF_INET, proto=0, flags=0
            )
        ]

    async def close(self) -> None:
        pass


async def _get(connector: aiohttp.BaseConnector, url: str) -> int:
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get(url, timeout=aiohttp.ClientTimeout(total=5)) as response,
    ):
        return response.status


async def test_resolver_guard_refuses_a_live_local_server(server: LiveServer) -> None:
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(GUARD_ON))
    with pytest.raises(aiohttp.ClientConnectorError) as caught:
        await _get(connector, f"http://localhost:{server.port}/hook")
    refusal = refusal_in(caught.value)
    assert isinstance(refusal, TargetRefused)
    assert "loopback" in str(refusal)
    assert server.hits == 0


async def test_resolver_guard_off_reaches_the_live_local_server(server: LiveServer) -> None:
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(GUARD_OFF))
    assert await _get(connector, f"http://localhost:{server.port}/hook") == 200
    assert server.hits == 1


async def test_guarded_connector_refuses_an_ip_literal(server: LiveServer) -> None:
    # aiohttp does not ask resolvers about IP literals; the socket factory catches them.
    with pytest.raises(aiohttp.ClientConnectorError) as caught:
        await _get(guarded_connector(GUARD_ON), f"http://127.0.0.1:{server.port}/hook")
    assert "loopback" in str(refusal_in(caught.value))
    assert server.hits == 0


async def test_guarded_connector_off_reaches_an_ip_literal(server: LiveServer) -> None:
    assert await _get(guarded_connector(GUARD_OFF), f"http://127.0.0.1:{server.port}/") == 200
    assert server.hits == 1


async def test_legacy_ipv4_literal_never_reaches_the_server(server: LiveServer) -> None:
    with pytest.raises(aiohttp.ClientError):
        await _get(guarded_connector(GUARD_ON), f"http://2130706433:{server.port}/hook")
    assert server.hits == 0


async def test_dns_rebinding_between_check_and_connect_is_refused(server: LiveServer) -> None:
    attacker = ScriptedResolver("93.184.216.34", "127.0.0.1")
    url = f"http://rebind.example:{server.port}/hook"

    assert await check_target(url, GUARD_ON, attacker) == ["93.184.216.34"]

    connector = aiohttp.TCPConnector(
        resolver=GuardedResolver(GUARD_ON, inner=attacker), use_dns_cache=False
    )
    with pytest.raises(aiohttp.ClientConnectorError) as caught:
        await _get(connector, url)
    assert "127.0.0.1" in str(refusal_in(caught.value))
    assert attacker.lookups == 2
    assert server.hits == 0


def test_refusal_in_ignores_ordinary_connection_errors() -> None:
    assert refusal_in(ConnectionRefusedError(111, "refused")) is None
