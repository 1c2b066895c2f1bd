"""One keep-alive HTTP/1.1 connection to a receiver: write a POST, parse the answer.

The answer is parsed by httptools (llhttp, the parser Node.js uses) with the caps aiohttp had:
at most `max_headers` header lines of at most `max_line_bytes` each, and only the first
`body_cap` bytes of the body kept. A connection is reused only when the answer was read to its
end and both sides keep it alive; anything unexpected closes it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import cast

import httptools

from shared.errors import HooklineError

# Bytes of an answer's head (status line and headers) before the parser gives up, whatever
# the per-line caps: 64 lines of 8 KiB.
_HEAD_SLACK_BYTES = 1024


class ProtocolError(HooklineError):
    """The receiver's answer is not HTTP/1.1 this client accepts; the connection is closed."""


class ConnectionClosed(HooklineError):
    """The receiver closed the connection before its answer was complete."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    retry_after: str | None
    location: str | None
    body: bytes
    """The first `body_cap` bytes of the body, as sent (never decompressed)."""


class Connection(asyncio.Protocol):
    """A client connection; one request at a time, made by `HttpPool`."""

    def __init__(self, *, max_headers: int, max_line_bytes: int) -> None:
        self._max_headers = max_headers
        self._max_line_bytes = max_line_bytes
        self._max_head_bytes = max_headers * max_line_bytes + _HEAD_SLACK_BYTES
        self._transport: asyncio.Transport | None = None
        self._parser: httptools.HttpResponseParser | None = None
        self._waiter: asyncio.Future[Answer] | None = None
        self.closed = False
        self.idle_since = 0.0
        self._reset(0)

    def _reset(self, body_cap: int) -> None:
        self._body_cap = body_cap
        self._status = 0
        self._headers_done = False
        self._head_bytes = 0
        self._header_count = 0
        self._retry_after: str | None = None
        self._location: str | None = None
        self._body: list[bytes] = []
        self._body_len = 0
        self._reusable = False

    @property
    def reusable(self) -> bool:
        return self._reusable and not self.closed

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport, only alike.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():
            # Bytes nobody asked for: the connection can no longer be trusted to frame answers.
            self.close()
            return
        if not self._headers_done:
            self._head_bytes += len(data)
            if self._head_bytes > self._max_head_bytes:
                self._fail(ProtocolError("the answer's headers are too large"))
                return
        assert self._parser is not None
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._finish(reusable=False)
        except httptools.HttpParserError as exc:
            cause = exc.__context__
            self._fail(cause if isinstance(cause, ProtocolError) else ProtocolError(str(exc)))

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is None or self._waiter.done():
            return
        if self._headers_done and self._framed_by_close():
            self._finish(reusable=False)
        else:
            self._waiter.set_exception(
                ConnectionClosed("the receiver closed the connection before its answer ended")
            )

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self._max_headers:
            raise ProtocolError(f"the answer has more than {self._max_headers} headers")
        if len(name) + len(value) + 2 > self._max_line_bytes:
            raise ProtocolError(f"an answer header is longer than {self._max_line_bytes} bytes")
        lowered = name.lower()
        if lowered == b"retry-after":
            self._retry_after = value.decode("latin-1")
        elif lowered == b"location":
            self._location = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        assert self._parser is not None
        self._status = self._parser.get_status_code()
        self._headers_done = True

    def on_body(self, body: bytes) -> None:
        left = self._body_cap - self._body_len
        if left > 0:
            kept = body[:left]
            self._body.append(kept)
            self._body_len += len(kept)
        if self._body_len >= self._body_cap and len(body) > left:
            # More than we keep: stop here rather than read a receiver's whole download.
            self._finish(reusable=False)

    def on_message_complete(self) -> None:
        if 100 <= self._status < 200:
            # An informational answer (103 Early Hints, say); the real one follows.
            cap = self._body_cap
            self._reset(cap)
            return
        assert self._parser is not None
        self._finish(reusable=self._parser.should_keep_alive())

    # the request

    async def request(self, head: bytes, body: bytes, body_cap: int) -> Answer:
        """Send one request and wait for its answer; the caller bounds the wait."""
        if self.closed or self._transport is None:
            raise ConnectionClosed("the connection was closed before the request")
        self._reset(body_cap)
        self._parser = httptools.HttpResponseParser(self)
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(head + body)
        return await self._waiter

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.abort()

    def _framed_by_close(self) -> bool:
        """Whether the answer had neither a length nor chunks, so it ends with the connection."""
        return self._parser is not None and not self._parser.should_keep_alive()

    def _finish(self, *, reusable: bool) -> None:
        if self._waiter is None or self._waiter.done():
            return
        self._reusable = reusable
        self._waiter.set_result(
            Answer(self._status, self._retry_after, self._location, b"".join(self._body))
        )
        if not reusable:
            self.close()

    def _fail(self, exc: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)
        self.abort()
