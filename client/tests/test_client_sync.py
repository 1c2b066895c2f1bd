"""Notifier: synchronous code, many threads, and a forked worker process."""

from __future__ import annotations

import asyncio
import json
import os
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import AMQP_URL, Ingest, close_connections_named, unique
from hookline_client import Notifier, PublishError


def _sync_view(namespace: str) -> list[str]:
    """What a Django or Flask view does: no event loop in this thread."""
    with Notifier(AMQP_URL, namespace) as notifier:
        key = notifier.notify("invoice.paid", {"invoice_id": "in_2"})
        keys = notifier.notify_many([{"type": "a.b", "id": "m-1"}, {"type": "a.c", "id": "m-2"}])
    return [key, *keys]


async def test_notify_from_sync_code_without_an_event_loop(ingest: Ingest) -> None:
    keys = await asyncio.to_thread(_sync_view, ingest.namespace)
    assert keys[1:] == ["m-1", "m-2"]
    assert sorted(await _take(ingest, 3)) == sorted(keys)


async def _take(ingest: Ingest, count: int) -> list[str]:
    return [json.loads(m.body)["id"] for m in await ingest.take(count)]


async def test_many_threads_share_one_connection(ingest: Ingest) -> None:
    name = unique("client-threads-")
    notifier = Notifier(AMQP_URL, ingest.namespace, connection_name=name)

    def send(thread: int) -> list[str]:
        return [notifier.notify("job.done", {"t": thread, "i": i}) for i in range(10)]

    with ThreadPoolExecutor(8) as pool:
        keys = [k for batch in pool.map(send, range(8)) for k in batch]
    try:
        assert len(set(keys)) == 80
        taken = await _take(ingest, 80)
        assert sorted(taken) == sorted(keys)
        assert await asyncio.to_thread(close_connections_named, name) == 1
        # ... and after that connection is gone, the next call opens another.
        again = await asyncio.to_thread(notifier.notify, "job.done", {"after": True})
        assert await _take(ingest, 1) == [again]
    finally:
        await asyncio.to_thread(notifier.close)


async def test_a_forked_child_opens_its_own_connection(ingest: Ingest) -> None:
    notifier = Notifier(AMQP_URL, ingest.namespace)
    try:
        await asyncio.to_thread(notifier.notify, "worker.started", {}, id="parent-1")
        pid = os.fork()
        if pid == 0:  # the child, as a gunicorn or Celery prefork worker
            code = 1
            try:
                notifier.notify("worker.started", {}, id="child-1")
                code = 0
            finally:
                os._exit(code)
        _, status = await asyncio.to_thread(os.waitpid, pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        await asyncio.to_thread(notifier.notify, "worker.started", {}, id="parent-2")
        assert sorted(await _take(ingest, 3)) == ["child-1", "parent-1", "parent-2"]
    finally:
        await asyncio.to_thread(notifier.close)


def test_unroutable_from_sync_code_raises_publish_error() -> None:
    with Notifier(AMQP_URL, unique("nothing"), timeout_s=3) as notifier:
        with pytest.raises(PublishError) as caught:
            notifier.notify("invoice.paid", {})
    assert caught.value.reason == "unroutable"
