"""The sender's HTTP client: a keep-alive pool of `Connection`s behind the SSRF guard.

Why not aiohttp's client: per POST it cost 176-231 us of CPU against about 40 us for this
(measured apart, docs/performance.md), and at one subscription per event the POST is most of
the sender. What it keeps of aiohttp's rules (CONTRACT section 4): connections only to
addresses the guard allowed, checked at every connect so DNS rebinding is refused; TLS
verified against the system's roots; no proxy, no cookies, no redirects followed; the answer's
headers and body read capped; at most `limit` requests at once; idle connections closed after
`keepalive_s`.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from yarl import URL

from services.sender.connection import Answer, Connection
from shared.errors import HooklineError
from shared.targets import TargetPolicy, check_url_shape, checked_addresses

_URL_CACHE_SIZE = 4096

AddressInfo = tuple[socket.AddressFamily, socket.SocketKind, int, str, tuple[Any, ...]]
Resolve = Callable[[str, int], Awaitable[Sequence[AddressInfo]]]
"""`getaddrinfo` for a stream socket: the addresses a host name stands for now."""


async def system_resolve(host: str, port: int) -> Sequence[AddressInfo]:
    """The operating system's answer (a thread of the loop's executor, as aiohttp's default)."""
    loop = asyncio.get_running_loop()
    return await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)


class ConnectFailed(HooklineError, OSError):
    """No connection could be made to any address of the target."""

    def __init__(self, host: str, port: int, strerror: str) -> None:
        super().__init__(strerror)
        self.host = host
        self.port = port
        self.reason = strerror


@dataclass(frozen=True, slots=True)
class Target:
    """What a URL says about where to connect and what to send first."""

    tls: bool
    host: str
    port: int
    authority: str
    path: str

    @property
    def key(self) -> tuple[bool, str, int]:
        return self.tls, self.host, self.port


def parse_target(url: str) -> Target:
    """The parts of an http(s) URL a request needs; raises `TargetRefused` for any other URL
    (`shared.targets.check_url_shape`, the API's check of the same URL)."""
    check_url_shape(url)
    parsed = URL(url)
    host = str(parsed.raw_host)
    return Target(
        tls=parsed.scheme == "https",
        host=host,
        port=int(parsed.port or 0),
        authority=parsed.host_port_subcomponent or host,
        path=parsed.raw_path_qs or "/",
    )


class HttpPool:
    """One per sender process; create and close it inside the running loop."""

    def __init__(
        self,
        policy: TargetPolicy,
        *,
        limit: int,
        connect_timeout_s: float,
        keepalive_s: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
        max_headers: int = 64,
        max_line_bytes: int = 8190,
        resolve: Resolve = system_resolve,
    ) -> None:
        self._policy = policy
        self._resolve = resolve
        self._slots = asyncio.Semaphore(limit)
        self._limit = limit
        self._connect_timeout_s = connect_timeout_s
        self._keepalive_s = keepalive_s
        self._ssl = ssl_context if ssl_context is not None else ssl.create_default_context()
        self._max_headers = max_headers
        self._max_line_bytes = max_line_bytes
        self._idle: dict[tuple[bool, str, int], deque[Connection]] = {}
        self._idle_count = 0
        self._targets: dict[str, Target] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False

    def target(self, url: str) -> Target:
        """`parse_target`, remembered: a sender posts to the same few URLs again and again."""
        found = self._targets.get(url)
        if found is None:
            found = parse_target(url)
            if len(self._targets) >= _URL_CACHE_SIZE:
                self._targets.clear()
            self._targets[url] = found
        return found

    async def post(
        self, target: Target, headers: dict[str, str], body: bytes, *, body_cap: int
    ) -> Answer:
        """POST `body` to `target`; the caller bounds the whole call with a timeout.

        Raises `TargetRefused`, `ConnectFailed`, `ssl.SSLError`, `ProtocolError`,
        `ConnectionClosed` or `ValueError` (a header value that would split the request).
        """
        head = _request_head(target, headers, len(body))
        async with self._slots:
            conn = self._take_idle(target.key) or await self._connect(target)
            try:
                answer = await conn.request(head, body, body_cap)
            except BaseException:
                conn.abort()
                raise
            self._release(target.key, conn)
            return answer

    async def close(self) -> None:
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
        self._idle_count = 0

    def _take_idle(self, key: tuple[bool, str, int]) -> Connection | None:
        idle = self._idle.get(key)
        if not idle:
            return None
        oldest_kept = time.monotonic() - self._keepalive_s
        while idle:
            conn = idle.pop()
            self._idle_count -= 1
            if not conn.closed and conn.idle_since > oldest_kept:
                return conn
            conn.close()
        return None

    def _release(self, key: tuple[bool, str, int], conn: Connection) -> None:
        if self._closed or not conn.reusable:
            conn.close()
            return
        if self._idle_count >= self._limit:
            self._evict_one()
        conn.idle_since = time.monotonic()
        self._idle.setdefault(key, deque()).append(conn)
        self._idle_count += 1
        if self._sweeper is None:
            loop = asyncio.get_running_loop()
            self._sweeper = loop.call_later(self._keepalive_s / 2, self._sweep)

    def _evict_one(self) -> None:
        """Close the longest-idle connection, so open sockets stay within the limit."""
        oldest: deque[Connection] | None = None
        for idle in self._idle.values():
            if idle and (oldest is None or idle[0].idle_since < oldest[0].idle_since):
                oldest = idle
        if oldest is not None:
            oldest.popleft().close()
            self._idle_count -= 1

    def _sweep(self) -> None:
        self._sweeper = None
        oldest_kept = time.monotonic() - self._keepalive_s
        for key in list(self._idle):
            idle = self._idle[key]
            while idle and (idle[0].closed or idle[0].idle_since <= oldest_kept):
                idle.popleft().close()
                self._idle_count -= 1
            if not idle:
                del self._idle[key]
        if self._idle_count and not self._closed:
            loop = asyncio.get_running_loop()
            self._sweeper = loop.call_later(self._keepalive_s / 2, self._sweep)

    async def _connect(self, target: Target) -> Connection:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self._connect_timeout_s):
            sock = await self._open_socket(loop, target)
            try:
                _, conn = await loop.create_connection(
                    lambda: Connection(
                        max_headers=self._max_headers, max_line_bytes=self._max_line_bytes
                    ),
                    sock=sock,
                    ssl=self._ssl if target.tls else None,
                    server_hostname=target.host if target.tls else None,
                )
            except BaseException:
                sock.close()
                raise
        return conn

    async def _open_socket(self, loop: asyncio.AbstractEventLoop, target: Target) -> socket.socket:
        """A connected socket to the first address of `target` that answers; all checked."""
        try:
            infos = await self._resolve(target.host, target.port)
        except OSError as exc:
            raise ConnectFailed(target.host, target.port, exc.strerror or str(exc)) from exc
        if not infos:
            raise ConnectFailed(target.host, target.port, "the host resolved to no address")
        # Every address is checked before any is tried, at every connect: what was checked is
        # what is used, and a DNS answer that changed since the API's check is judged anew.
        checked_addresses(target.host, [str(info[4][0]) for info in infos], self._policy)
        last: OSError | None = None
        for family, sock_type, proto, _, sockaddr in infos:
            sock = socket.socket(family, sock_type, proto)
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                await loop.sock_connect(sock, sockaddr)
            except OSError as exc:
                sock.close()
                last = exc
                continue
            except BaseException:
                sock.close()
                raise
            return sock
        reason = (last.strerror or str(last)) if last is not None else "no address"
        raise ConnectFailed(target.host, target.port, reason)


def _request_head(target: Target, headers: dict[str, str], length: int) -> bytes:
    lines = [f"POST {target.path} HTTP/1.1\r\nHost: {target.authority}\r\n"]
    for name, value in headers.items():
        if "\r" in value or "\n" in value:
            raise ValueError(f"the {name} header would split the request")
        lines.append(f"{name}: {value}\r\n")
    lines.append(f"Content-Length: {length}\r\n\r\n")
    return "".join(lines).encode("latin-1")
