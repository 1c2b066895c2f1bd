"""The bench's webhook receiver: a raw asyncio HTTP server in its own process.

Paths name what a request is for: `/s/<tag>/<sub>` answers 200 at once and records the
delivery; `/h/<tag>/<sub>` never answers (a hanging receiver) until the client gives up or
`HANG_CAP_S` passes. A record is (sub, seq, webhook-id, sent_at, received_at), where seq and
sent_at come from the payload's `data`, written there by the publisher. The parent drives the
process over a pipe with `Receiver`: `counts()` while it runs, `collect(tag)` at the end;
`trust(tag, secret)` makes it verify the signature of every webhook of a tag, and `down()` /
`up()` take it off the network (refused connections) and back on the same port (the fault
suite's receiver outage).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, cast

import orjson

from bench.httpwire import BadRequest, Request, parse_request, response
from bench.stats import Receipt
from shared.signing import secret_bytes, verify

HANG_CAP_S = 120.0
"""A hanging request is closed after this long even if the client never gives up."""

SEQ_UNREADABLE = -2
"""The seq recorded for a body without a readable `data.seq`."""

_OK = response(200, "OK")
_NOT_FOUND = response(404, "Not Found")
_BAD = response(400, "Bad Request", close=True)


@dataclass
class Recorder:
    """Everything the receiver saw, by tag."""

    receipts: dict[str, list[Receipt]] = field(default_factory=lambda: defaultdict(list))
    hung: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    unsigned: int = 0
    keys: dict[str, bytes] = field(default_factory=dict)
    """The signing key of each tag whose webhooks are verified."""
    bad_signatures: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    """Webhooks of a verified tag whose signature is missing or wrong."""

    def record(self, tag: str, sub: int, request: Request, received_at: float) -> None:
        if "webhook-signature" not in request.headers:
            self.unsigned += 1
        key = self.keys.get(tag)
        if key is not None and not signed_by(key, request):
            self.bad_signatures[tag] += 1
        seq, sent_at = _seq_and_sent_at(request.body, received_at)
        webhook_id = request.headers.get("webhook-id", "")
        self.receipts[tag].append((sub, seq, webhook_id, sent_at, received_at))

    def counts(self) -> dict[str, Any]:
        return {
            "received": {tag: len(items) for tag, items in self.receipts.items()},
            "hung": dict(self.hung),
            "unsigned": self.unsigned,
            "bad_signatures": dict(self.bad_signatures),
        }


def signed_by(key: bytes, request: Request) -> bool:
    """True when the request carries a valid Standard Webhooks signature under `key`."""
    headers = request.headers
    try:
        timestamp = int(headers.get("webhook-timestamp", ""))
    except ValueError:
        return False
    msg_id = headers.get("webhook-id", "")
    return verify(key, msg_id, timestamp, request.body, headers.get("webhook-signature", ""))


def _seq_and_sent_at(body: bytes, received_at: float) -> tuple[int, float]:
    try:
        data = orjson.loads(body)["data"]
        return int(data["seq"]), float(data["sent_at"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return SEQ_UNREADABLE, received_at


def route(path: str) -> tuple[str, str, int] | None:
    """(kind, tag, sub) of a path `/<s|h>/<tag>/<sub>`, or None for any other path."""
    parts = path.split("?", 1)[0].split("/")
    if len(parts) != 4 or parts[0] or parts[1] not in ("s", "h"):
        return None
    try:
        return parts[1], parts[2], int(parts[3])
    except ValueError:
        return None


class _Connection(asyncio.Protocol):
    def __init__(self, recorder: Recorder, live: set[asyncio.Transport]) -> None:
        self._recorder = recorder
        self._live = live
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._hang_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self._transport = cast(asyncio.Transport, transport)
        self._live.add(self._transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._live.discard(self._transport)
        if self._hang_timer is not None:
            self._hang_timer.cancel()

    def data_received(self, data: bytes) -> None:
        if self._hang_timer is not None or self._transport is None:
            return  # a hanging exchange: HTTP/1.1 cannot answer later requests first
        self._buffer += data
        received_at = time.time()
        # Each round consumes one request from the buffer, so the rounds are bounded by it.
        for _ in range(len(self._buffer) + 1):
            try:
                request = parse_request(self._buffer)
            except BadRequest:
                self._transport.write(_BAD)
                self._transport.close()
                return
            if request is None:
                return
            del self._buffer[: request.size]
            if not self._answer(request, received_at):
                return

    def _answer(self, request: Request, received_at: float) -> bool:
        """Handle one request; False when the connection takes no further requests."""
        assert self._transport is not None
        target = route(request.path)
        if target is None or request.method != "POST":
            self._transport.write(_NOT_FOUND)
            return True
        kind, tag, sub = target
        if kind == "h":
            self._recorder.hung[tag] += 1
            loop = asyncio.get_running_loop()
            self._hang_timer = loop.call_later(HANG_CAP_S, self._transport.close)
            return False
        self._recorder.record(tag, sub, request, received_at)
        self._transport.write(_OK)
        if not request.keep_alive:
            self._transport.close()
            return False
        return True


class _Listener:
    """The listening socket and its open connections, which `down()` closes all at once."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        self._live: set[asyncio.Transport] = set()

    async def up(self) -> None:
        """Listen (again) on the same port; the first call picks a free one."""
        if self._server is not None:
            return
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self.recorder, self._live),
            "127.0.0.1",
            self.port,
            backlog=4096,
            reuse_address=True,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    def down(self) -> None:
        """Stop listening and drop every connection: clients see refused connections."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for transport in list(self._live):
            transport.abort()
        self._live.clear()


def _serve_commands(conn: Connection, listener: _Listener, stop: asyncio.Event) -> None:
    """Answer every command waiting on the pipe: `counts`, `collect <tag>`, `trust <tag>
    <secret>`, `down`, `up`, `stop`."""
    # The loop made the pipe non-blocking when it started watching it; a large answer
    # must be written whole, so writes block (the parent reads them in a thread).
    os.set_blocking(conn.fileno(), True)
    recorder = listener.recorder
    while conn.poll():
        try:
            command, argument = conn.recv()
        except EOFError:
            stop.set()
            return
        if command == "counts":
            conn.send(recorder.counts())
        elif command == "collect":
            conn.send(recorder.receipts.pop(argument, []))
            recorder.hung.pop(argument, None)
        elif command == "trust":
            tag, secret = argument.split(" ", 1)
            recorder.keys[tag] = secret_bytes(secret)
            conn.send(None)
        elif command == "down":
            listener.down()
            conn.send(None)
        elif command == "up":
            task = asyncio.get_running_loop().create_task(listener.up())
            task.add_done_callback(lambda t: conn.send(_failure(t)))
        else:
            conn.send(None)
            stop.set()
            return


def _failure(task: asyncio.Task[None]) -> str | None:
    """None when `task` succeeded, else what went wrong (sent back over the pipe)."""
    exc = None if task.cancelled() else task.exception()
    return None if exc is None and not task.cancelled() else repr(exc or "cancelled")


async def _serve(conn: Connection) -> None:
    listener = _Listener(Recorder())
    await listener.up()
    conn.send(listener.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(conn.fileno(), _serve_commands, conn, listener, stop)
    try:
        await stop.wait()
    finally:
        loop.remove_reader(conn.fileno())
        listener.down()


def receiver_main(conn: Connection) -> None:
    """Entry point of the receiver process; the parent stops it with a `stop` command."""
    # Ctrl-C reaches the whole process group; the parent decides when the receiver stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import uvloop

    uvloop.install()
    asyncio.run(_serve(conn))


class Receiver:
    """The parent's handle on the receiver process."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=receiver_main, args=(child,), name="bench-receiver", daemon=True
        )
        self._child = child
        self._lock = threading.Lock()
        self.port = 0

    def start(self, timeout_s: float = 30.0) -> None:
        self._process.start()
        self._child.close()
        if not self._conn.poll(timeout_s):
            raise RuntimeError("the receiver did not start")
        self.port = int(self._conn.recv())

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def url(self, tag: str, sub: int, *, hanging: bool = False) -> str:
        return f"http://127.0.0.1:{self.port}/{'h' if hanging else 's'}/{tag}/{sub}"

    def _ask(self, command: str, argument: str = "", timeout_s: float = 60.0) -> Any:
        with self._lock:
            self._conn.send((command, argument))
            if not self._conn.poll(timeout_s):
                raise RuntimeError(f"the receiver did not answer {command!r}")
            return self._conn.recv()

    async def counts(self) -> dict[str, Any]:
        """Receipts and hanging requests so far, by tag."""
        result: dict[str, Any] = await asyncio.to_thread(self._ask, "counts")
        return result

    async def received(self, tag: str) -> int:
        counts = await self.counts()
        return int(counts["received"].get(tag, 0))

    async def trust(self, tag: str, secret: str) -> None:
        """Verify every later webhook of `tag` with `secret` (a `whsec_` secret)."""
        await asyncio.to_thread(self._ask, "trust", f"{tag} {secret}")

    async def down(self) -> None:
        """Refuse connections (and drop open ones) until `up()`."""
        await asyncio.to_thread(self._ask, "down")

    async def up(self) -> None:
        """Listen again on the same port."""
        failure = await asyncio.to_thread(self._ask, "up")
        if failure is not None:
            raise RuntimeError(f"the receiver could not listen on its port again: {failure}")

    async def collect(self, tag: str) -> list[Receipt]:
        """Every receipt of `tag`, removed from the receiver."""
        result: list[Receipt] = await asyncio.to_thread(self._ask, "collect", tag)
        return result

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the process (ask, then terminate); safe to call twice."""
        if self._process.is_alive():
            try:
                self._ask("stop", timeout_s=timeout_s)
            except (OSError, EOFError, RuntimeError):
                pass
            self._process.join(timeout_s)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(timeout_s)
        self._conn.close()
