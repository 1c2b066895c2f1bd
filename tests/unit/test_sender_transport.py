"""The sender's HTTP client against a live local server: what reaches the wire, what is read
back, when a connection is reused, and what the SSRF guard and TLS refuse."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
import uvloop
from aiohttp.abc import AbstractResolver, ResolveResult

from services.sender import client
from services.sender.classify import ErrorKind
from services.sender.connection import ConnectionClosed, ProtocolError
from services.sender.transport import AddressInfo, HttpPool
from shared.errors import TargetRefused
from shared.targets import TargetPolicy, check_target
from tests.support import free_port
from tests.support.scripted_http import HANG, Script, ScriptedServer, answer, self_signed

GUARD_ON = TargetPolicy(allow_private=False, allowed_networks=())
GUARD_OFF = TargetPolicy(allow_private=True, allowed_networks=())
CAP = 4096


# pytest-asyncio's replacement (a loop-factory hook) applies to the whole suite at once.
pytestmark = pytest.mark.filterwarnings("ignore:Overriding the .event_loop_policy. fixture")


@pytest.fixture(scope="module", params=["asyncio", "uvloop"])
def event_loop_policy(request: pytest.FixtureRequest) -> asyncio.AbstractEventLoopPolicy:
    """Every test on both loops: the services run on uvloop, whose transports differ."""
    if request.param == "uvloop":
        return uvloop.EventLoopPolicy()
    return asyncio.DefaultEventLoopPolicy()


def pool(policy: TargetPolicy = GUARD_OFF, **kwargs: object) -> HttpPool:
    options: dict[str, object] = {"limit": 8, "connect_timeout_s": 2.0, **kwargs}
    return HttpPool(policy, **options)  # type: ignore[arg-type]


@pytest.fixture
async def serve() -> AsyncIterator[list[ScriptedServer]]:
    servers: list[ScriptedServer] = []
    yield servers
    for server in servers:
        await server.close()


async def started(
    servers: list[ScriptedServer], script: Script, **kwargs: object
) -> ScriptedServer:
    server = ScriptedServer(script)
    await server.start(**kwargs)  # type: ignore[arg-type]
    servers.append(server)
    return server


async def post(http: HttpPool, url: str, body: bytes = b'{"a":1}', **headers: str) -> int:
    answered = await http.post(http.target(url), headers, body, body_cap=CAP)
    return answered.status


async def test_one_connection_carries_successive_posts_with_the_headers_given(
    serve: list[ScriptedServer],
) -> None:
    server = await started(serve, lambda _: answer(204, b""))
    http = pool()
    try:
        for _ in range(3):
            assert await post(http, server.url("/in?x=1"), b"{}", **{"webhook-id": "evt_1"}) == 204
    finally:
        await http.close()
    assert server.connections == 1
    first = server.requests[0]
    assert first.startswith(b"POST /in?x=1 HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{server.port}\r\n".encode() in first
    assert b"webhook-id: evt_1\r\n" in first
    assert first.endswith(b"Content-Length: 2\r\n\r\n{}")


async def test_a_chunked_answer_is_read_whole_and_the_connection_kept(
    serve: list[ScriptedServer],
) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    server = await started(serve, lambda _: chunked)
    http = pool()
    try:
        got = await http.post(http.target(server.url()), {}, b"x", body_cap=CAP)
        assert (got.status, got.body) == (200, b"abcde")
        assert await post(http, server.url()) == 200
    finally:
        await http.close()
    assert server.connections == 1


async def test_only_the_cap_of_a_long_body_is_read_and_that_connection_is_dropped(
    serve: list[ScriptedServer],
) -> None:
    server = await started(serve, lambda _: answer(200, b"x" * 100_000))
    http = pool()
    try:
        got = await http.post(http.target(server.url()), {}, b"x", body_cap=CAP)
        assert got.body == b"x" * CAP
        assert await post(http, server.url()) == 200
    finally:
        await http.close()
    assert server.connections == 2


async def test_an_early_hint_is_skipped_for_the_answer_after_it(
    serve: list[ScriptedServer],
) -> None:
    hint = b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
    server = await started(serve, lambda _: hint + answer(201, b"made", ("Retry-After: 5",)))
    http = pool()
    try:
        got = await http.post(http.target(server.url()), {}, b"x", body_cap=CAP)
    finally:
        await http.close()
    assert (got.status, got.body, got.retry_after) == (201, b"made", "5")


async def test_connection_close_and_close_framed_answers_are_read_then_not_reused(
    serve: list[ScriptedServer],
) -> None:
    answers = [answer(200, b"a", ("Connection: close",)), b"HTTP/1.1 200 OK\r\n\r\nuntil-eof", None]
    server = await started(serve, lambda n: answers[min(n, 2)])
    http = pool()
    try:
        first = await http.post(http.target(server.url()), {}, b"x", body_cap=CAP)
        second = await http.post(http.target(server.url()), {}, b"x", body_cap=CAP)
    finally:
        await http.close()
    assert (first.body, second.body) == (b"a", b"until-eof")
    assert server.connections == 2


@pytest.mark.parametrize(
    ("head", "why"),
    [
        ("".join(f"X-{i}: v\r\n" for i in range(65)), "more than 64 headers"),
        (f"X-Long: {'v' * 9000}\r\n", "longer than 8190 bytes"),
        (f"X-Long: {'v' * 600_000}\r\n", "too large"),
    ],
)
async def test_an_answer_head_past_the_caps_is_refused(
    serve: list[ScriptedServer], head: str, why: str
) -> None:
    server = await started(
        serve, lambda _: f"HTTP/1.1 200 OK\r\n{head}Content-Length: 0\r\n\r\n".encode()
    )
    http = pool()
    try:
        with pytest.raises(ProtocolError, match=why):
            await post(http, server.url())
    finally:
        await http.close()


async def test_garbage_and_a_hang_up_are_errors_not_answers(serve: list[ScriptedServer]) -> None:
    garbage = await started(serve, lambda _: b"SMTP ready\r\n\r\n")
    hang_up = await started(serve, lambda _: None)
    http = pool()
    try:
        with pytest.raises(ProtocolError):
            await post(http, garbage.url())
        with pytest.raises(ConnectionClosed):
            await post(http, hang_up.url())
    finally:
        await http.close()


async def test_a_header_value_that_would_split_the_request_is_never_sent(
    serve: list[ScriptedServer],
) -> None:
    server = await started(serve, lambda _: answer())
    http = pool()
    try:
        with pytest.raises(ValueError, match="split"):
            await post(http, server.url(), **{"webhook-id": "evt_1\r\nX-Injected: 1"})
    finally:
        await http.close()
    assert server.requests == []


async def test_a_hanging_receiver_is_a_timeout_and_its_connection_is_dropped(
    serve: list[ScriptedServer],
) -> None:
    server = await started(serve, lambda n: HANG if n == 0 else answer())
    http = pool()
    try:
        result = await client.post(http, server.url(), {}, b"x", body_cap=CAP, timeout_s=0.3)
        assert result.error_kind is ErrorKind.TIMEOUT
        assert "0.3s" in (result.error or "")
        again = await client.post(http, server.url(), {}, b"x", body_cap=CAP, timeout_s=2)
        assert again.status_code == 200
    finally:
        await http.close()
    assert server.connections == 2


async def test_nothing_listening_is_a_connection_error_naming_the_address() -> None:
    port = free_port()
    http = pool()
    try:
        url = f"http://127.0.0.1:{port}/secret-path"
        result = await client.post(http, url, {}, b"x", body_cap=CAP, timeout_s=2)
    finally:
        await http.close()
    assert result.error_kind is ErrorKind.CONNECTION
    assert f"127.0.0.1:{port}" in (result.error or "")
    assert "secret-path" not in (result.error or "")


async def test_idle_connections_expire_and_stay_within_the_limit(
    serve: list[ScriptedServer],
) -> None:
    first = await started(serve, lambda _: answer())
    second = await started(serve, lambda _: answer())
    http = pool(limit=1, keepalive_s=0.2)
    try:
        await post(http, first.url())
        await post(http, second.url())  # the limit closes the first server's idle connection
        await asyncio.sleep(0.05)
        assert first.closed_by_client == 1
        await asyncio.sleep(0.4)  # past the keep-alive: the sweep closes the second's
        assert second.closed_by_client == 1
        await post(http, second.url())
    finally:
        await http.close()
    assert second.connections == 2


# The SSRF guard: refused targets are never connected to.


async def test_the_guard_refuses_a_host_name_resolving_to_loopback(
    serve: list[ScriptedServer],
) -> None:
    server = await started(serve, lambda _: answer())
    http = pool(GUARD_ON)
    try:
        with pytest.raises(TargetRefused, match="loopback"):
            await post(http, server.url(host="localhost"))
        result = await client.post(
            http, server.url(host="localhost"), {}, b"x", body_cap=CAP, timeout_s=2
        )
    finally:
        await http.close()
    assert result.error_kind is ErrorKind.TARGET_REFUSED
    assert server.connections == 0


@pytest.mark.parametrize("host", ["127.0.0.1", "2130706433", "[::ffff:127.0.0.1]"])
async def test_the_guard_refuses_ip_literals_in_every_spelling(
    serve: list[ScriptedServer], host: str
) -> None:
    server = await started(serve, lambda _: answer())
    http = pool(GUARD_ON)
    try:
        with pytest.raises(TargetRefused, match="loopback"):
            await post(http, server.url(host=host))
    finally:
        await http.close()
    assert server.connections == 0


async def test_the_guard_off_reaches_the_local_server(serve: list[ScriptedServer]) -> None:
    server = await started(serve, lambda _: answer())
    http = pool(GUARD_OFF)
    try:
        assert await post(http, server.url(host="localhost")) == 200
    finally:
        await http.close()


class Rebinding(AbstractResolver):
    """A DNS rebinding attacker: a public address for the API's check, loopback after."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.lookups = 0

    def next_address(self) -> str:
        self.lookups += 1
        return "93.184.216.34" if self.lookups == 1 else "127.0.0.1"

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        address = self.next_address()
        return [
            ResolveResult(
                hostname=host, host=address, port=port, family=socket.AF_INET, proto=0, flags=0
            )
        ]

    async def getaddrinfo(self, host: str, port: int) -> Sequence[AddressInfo]:
        address = self.next_address()
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    async def close(self) -> None:
        pass


async def test_dns_rebinding_between_the_check_and_the_connect_is_refused(
    serve: list[ScriptedServer],
) -> None:
    server = await started(serve, lambda _: answer())
    attacker = Rebinding(server.port)
    url = server.url(host="rebind.example")
    assert await check_target(url, GUARD_ON, attacker) == ["93.184.216.34"]
    http = pool(GUARD_ON, resolve=attacker.getaddrinfo)
    try:
        with pytest.raises(TargetRefused, match=r"127\.0\.0\.1"):
            await post(http, url)
    finally:
        await http.close()
    assert attacker.lookups == 2
    assert server.connections == 0


# TLS


async def to_loopback(host: str, port: int) -> Sequence[AddressInfo]:
    return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]


async def test_tls_is_verified_against_the_trusted_roots(
    serve: list[ScriptedServer], tmp_path: Path
) -> None:
    server_tls, trusting = self_signed(tmp_path)
    server = await started(serve, lambda _: answer(200, b"secure"), ssl_context=server_tls)
    untrusting = pool()
    try:
        result = await client.post(
            untrusting,
            server.url(scheme="https", host="localhost"),
            {},
            b"x",
            body_cap=CAP,
            timeout_s=5,
        )
    finally:
        await untrusting.close()
    assert result.error_kind is ErrorKind.TLS
    assert server.requests == []

    trusted = pool(ssl_context=trusting, resolve=to_loopback)
    try:
        got = await trusted.post(
            trusted.target(server.url(scheme="https", host="localhost")), {}, b"x", body_cap=CAP
        )
        assert got.body == b"secure"
        # The certificate names localhost and 127.0.0.1, not this host name.
        with pytest.raises(ssl.SSLCertVerificationError):
            await post(trusted, server.url(scheme="https", host="other.example"))
    finally:
        await trusted.close()
    assert len(server.requests) == 1


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/hook", "http://user:pw@127.0.0.1:{port}/h"])
async def test_a_url_the_api_would_refuse_is_refused_without_a_connection(
    serve: list[ScriptedServer], url: str
) -> None:
    server = await started(serve, lambda _: answer())
    http = pool()
    try:
        result = await client.post(
            http, url.format(port=server.port), {}, b"x", body_cap=CAP, timeout_s=2
        )
    finally:
        await http.close()
    assert result.error_kind is ErrorKind.TARGET_REFUSED
    assert server.connections == 0
