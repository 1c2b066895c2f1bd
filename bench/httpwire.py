"""A minimal HTTP/1.1 request parser for the bench receiver: enough for webhook POSTs.

It reads a request line, headers, and a body framed by Content-Length or chunked encoding,
from a buffer that may hold several pipelined requests or only part of one.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 4 * 1024 * 1024


class BadRequest(ValueError):
    """The bytes are not a request this parser accepts; the connection should be closed."""


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    """Lower-case names; a repeated header keeps its last value."""
    body: bytes
    size: int
    """Bytes of the buffer this request used."""

    @property
    def keep_alive(self) -> bool:
        return self.headers.get("connection", "").lower() != "close"


def parse_request(buf: bytes | bytearray) -> Request | None:
    """The first complete request in `buf`, or None when more bytes are needed."""
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0:
        if len(buf) > MAX_HEAD_BYTES:
            raise BadRequest("request head too large")
        return None
    lines = bytes(buf[:head_end]).decode("latin-1").split("\r\n")
    try:
        method, path, _version = lines[0].split(" ", 2)
    except ValueError:
        raise BadRequest("malformed request line") from None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise BadRequest("malformed header line")
        headers[name.strip().lower()] = value.strip()
    body_start = head_end + 4
    if headers.get("transfer-encoding", "").lower() == "chunked":
        framed = _chunked(buf, body_start)
    else:
        framed = _sized(buf, body_start, headers.get("content-length", "0"))
    if framed is None:
        return None
    body, end = framed
    return Request(method, path, headers, body, end)


def _sized(buf: bytes | bytearray, start: int, length_text: str) -> tuple[bytes, int] | None:
    try:
        length = int(length_text)
    except ValueError:
        raise BadRequest("bad content-length") from None
    if length < 0 or length > MAX_BODY_BYTES:
        raise BadRequest("content-length out of range")
    end = start + length
    if len(buf) < end:
        return None
    return bytes(buf[start:end]), end


def _chunked(buf: bytes | bytearray, start: int) -> tuple[bytes, int] | None:
    parts: list[bytes] = []
    total = 0
    pos = start
    # Each round consumes one chunk, so the loop ends within len(buf) rounds.
    for _ in range(len(buf) + 1):
        line_end = buf.find(b"\r\n", pos)
        if line_end < 0:
            return None
        try:
            size = int(bytes(buf[pos:line_end]).split(b";", 1)[0], 16)
        except ValueError:
            raise BadRequest("bad chunk size") from None
        total += size
        if total > MAX_BODY_BYTES:
            raise BadRequest("chunked body too large")
        data_start = line_end + 2
        if size == 0:
            # No trailers are sent by the clients we serve: the terminator is one CRLF.
            if len(buf) < data_start + 2:
                return None
            return b"".join(parts), data_start + 2
        if len(buf) < data_start + size + 2:
            return None
        parts.append(bytes(buf[data_start : data_start + size]))
        pos = data_start + size + 2
    return None


def response(status: int, reason: str, *, close: bool = False) -> bytes:
    """An empty-bodied response."""
    connection = "close" if close else "keep-alive"
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\nConnection: {connection}\r\n\r\n"
    ).encode("ascii")
