"""`Notifier`: `AsyncNotifier` for synchronous code (Django, Flask, Celery tasks).

The application runs no event loop: the notifier keeps a private one in a daemon thread,
started on the first call, and every call hands its coroutine to that loop and blocks until
the confirm. Calls from many threads share the one connection. After `fork` (gunicorn,
Celery prefork) the child has neither the thread nor a connection it may use: the first
call in the child notices the new process id and opens its own, leaving the parent's
connection untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import weakref
from collections.abc import Callable, Coroutine, Iterable, Mapping
from concurrent.futures import TimeoutError as FutureTimeout
from types import TracebackType
from typing import Any, TypeVar

from hookline_client.envelope import MAX_PAYLOAD_BYTES, Event, envelope
from hookline_client.errors import PublishError
from hookline_client.notifier import DEFAULT_TIMEOUT_S, AsyncNotifier

T = TypeVar("T")
_MARGIN_S = 5.0
"""Beyond the notifier's own bound, how long a caller waits for the loop thread at worst."""
_live: weakref.WeakSet[Notifier] = weakref.WeakSet()


def _forget_all_after_fork() -> None:
    for notifier in list(_live):
        notifier._forget()


os.register_at_fork(after_in_child=_forget_all_after_fork)


class _Worker:
    """An event loop in a daemon thread, with the AsyncNotifier living on it."""

    def __init__(self, make: Callable[[], AsyncNotifier]) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="hookline-notifier", daemon=True
        )
        self.thread.start()
        self.notifier: AsyncNotifier = self.run(self._make(make), None)

    @staticmethod
    async def _make(make: Callable[[], AsyncNotifier]) -> AsyncNotifier:
        return make()  # on the loop, where the notifier will run

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float | None) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout_s)
        except FutureTimeout:
            future.cancel()
            raise PublishError("timeout", "the notifier's loop did not answer in time") from None

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.run(self.notifier.close(), 5.0)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5.0)
        if not self.thread.is_alive():
            self.loop.close()


class Notifier:
    """Publishes events to `{namespace}.ingest` from synchronous code; thread- and fork-safe.

    The same arguments and calls as `AsyncNotifier`, without `await`. Nothing connects
    before the first call, so a notifier made at import time in a pre-forking server opens
    its connection in each worker. Use it as a context manager or call `close()`.
    """

    def __init__(
        self,
        amqp_url: str,
        namespace: str = "hookline",
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_payload: int = MAX_PAYLOAD_BYTES,
        connection_name: str = "hookline-client",
    ) -> None:
        self._args = (amqp_url, namespace)
        self._options: dict[str, Any] = {
            "timeout_s": timeout_s,
            "max_payload": max_payload,
            "connection_name": connection_name,
        }
        self.timeout_s = timeout_s
        self.max_payload = max_payload
        self._lock = threading.Lock()
        self._worker: _Worker | None = None
        self._closed = False
        _live.add(self)

    def __enter__(self) -> Notifier:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def notify(
        self,
        type: str,
        data: Mapping[str, Any] | None = None,
        *,
        id: str | None = None,
        tenant_id: str | None = None,
    ) -> str:
        """Publish one event and block until it is confirmed; returns its idempotency key.

        Raises ValueError (in the calling thread, before sending) for an event ingest would
        refuse, PublishError when it was not confirmed.
        """
        checked = envelope(type, data, id=id, tenant_id=tenant_id, max_payload=self.max_payload)
        worker = self._ready()
        keys = worker.run(worker.notifier.publish_envelopes([checked]), self._wait_s())
        return keys[0]

    def notify_many(self, events: Iterable[Event | Mapping[str, Any]]) -> list[str]:
        """Publish a burst with pipelined confirms; see `AsyncNotifier.notify_many`."""
        items = list(events)
        worker = self._ready()
        return worker.run(worker.notifier.notify_many(items), self._wait_s())

    def connect(self) -> None:
        """Open the connection now rather than on the first call."""
        worker = self._ready()
        worker.run(worker.notifier.connect(), self._wait_s())

    def close(self) -> None:
        """Close the connection and stop the loop thread; later calls raise RuntimeError."""
        with self._lock:
            self._closed = True
            worker, self._worker = self._worker, None
        if worker is not None and worker.pid == os.getpid():
            worker.stop()

    def _wait_s(self) -> float:
        return self.timeout_s + _MARGIN_S

    def _ready(self) -> _Worker:
        with self._lock:
            if self._closed:
                raise RuntimeError("this notifier is closed")
            if self._worker is None or self._worker.pid != os.getpid():
                # A worker of another process (inherited by fork) is dropped unused: its
                # socket belongs to the parent's connection.
                self._worker = _Worker(lambda: AsyncNotifier(*self._args, **self._options))
            return self._worker

    def _forget(self) -> None:
        """In a forked child: drop the parent's worker and lock without touching them."""
        self._lock = threading.Lock()
        self._worker = None
