"""Unexpected failures of a delivery's handling: counted, bounded, and settled cleanly."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from services.sender import worker as worker_module
from services.sender.failures import FAILURE_LIMIT, FailureCounts
from services.sender.worker import DeliveryWorker, WorkerParts
from shared.acks import BatchAcker
from shared.wire.messages import DeliveryMessage
from tests.support import make_settings
from tests.support.amqp_fakes import FakeChannel


def test_a_key_reaches_the_limit_after_that_many_failures_in_a_row() -> None:
    counts = FailureCounts(limit=3)
    assert [counts.failed("dlv_1", redelivered=False) for _ in range(3)] == [False, False, True]
    # Dropped once given up on: a fresh count if it ever comes back.
    assert counts.failed("dlv_1", redelivered=False) is False


def test_a_success_clears_the_count_and_a_redelivery_counts_as_a_failure() -> None:
    counts = FailureCounts(limit=3)
    counts.failed("dlv_1", redelivered=False)
    counts.succeeded("dlv_1")
    assert counts.failed("dlv_1", redelivered=False) is False
    # A sender that restarted does not know the earlier failures; the broker says there were.
    assert counts.failed("dlv_2", redelivered=True) is False
    assert counts.failed("dlv_2", redelivered=True) is True


def test_the_oldest_keys_are_forgotten_beyond_the_bound() -> None:
    counts = FailureCounts(limit=2, tracked=2)
    for key in ("a", "b", "c"):
        counts.failed(key, redelivered=False)
    assert counts.failed("a", redelivered=False) is False
    assert counts.failed("c", redelivered=False) is True


@dataclass
class BrokenNackMessage:
    channel: FakeChannel
    delivery_tag: int
    message_id: str = "dlv_1"
    redelivered: bool = False
    headers: dict[str, Any] = field(default_factory=dict)
    body: bytes = b"{}"

    async def nack(self, requeue: bool = True) -> None:
        raise ConnectionError("channel closed")


async def test_a_failed_nack_does_not_hold_back_later_acks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(worker_module, "_NACK_PAUSE_S", 0.0)
    acker = BatchAcker(tick_s=10.0, hold_s=10.0)
    parts = WorkerParts(make_settings("ns", "db"), *([None] * 6), acker)  # type: ignore[arg-type, call-arg]
    worker = DeliveryWorker(parts)

    # A bug, not an outage: an outage is held and tried again in hand, never nacked.
    async def bug(message: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(worker, "_process", bug)
    channel = FakeChannel()
    await worker.handle(BrokenNackMessage(channel, 1))  # type: ignore[arg-type]
    later = acker.received(BrokenNackMessage(channel, 2))  # type: ignore[arg-type]
    acker.finish(later)
    acker.start()
    await acker.close()
    # Tag 1 is settled (nacked, or requeued with its channel): tag 2 goes out in a multiple
    # ack at once instead of waiting the hold and going alone.
    assert channel.acks == [(2, True)]


@dataclass
class DeliveryFakeMessage:
    """A consumed delivery message as the worker sees it; nacks are counted."""

    channel: FakeChannel
    delivery_tag: int
    msg: DeliveryMessage
    redelivered: bool = True
    nacks: int = 0

    def __getattr__(self, name: str) -> Any:
        props = self.msg.properties()
        if name in props:
            return props[name]
        if name == "body":
            return self.msg.body
        raise AttributeError(name)

    async def nack(self, requeue: bool = True) -> None:
        self.nacks += 1


@dataclass
class DeadRecorder:
    copies: list[str] = field(default_factory=list)

    async def dead(self, msg: DeliveryMessage, error: str) -> None:
        self.copies.append(msg.delivery_id)


class BrokenAttemptLog:
    async def record(self, change: object) -> None:
        raise RuntimeError("attempt log closed")


async def test_a_dead_lettered_message_is_acked_even_if_marking_it_failed_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(worker_module, "_NACK_PAUSE_S", 0.0)
    acker = BatchAcker(tick_s=10.0, hold_s=10.0)
    requeue = DeadRecorder()
    parts = WorkerParts(
        make_settings("ns", "db"),
        *([None] * 4),  # type: ignore[arg-type]
        BrokenAttemptLog(),  # type: ignore[arg-type]
        requeue,  # type: ignore[arg-type]
        acker,
    )
    worker = DeliveryWorker(parts)

    async def bug(message: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(worker, "_process", bug)
    channel = FakeChannel()
    msg = DeliveryMessage("dlv_1", "evt_1", "sub_1", "order.created", b"{}")
    message = DeliveryFakeMessage(channel, 1, msg)
    for _ in range(FAILURE_LIMIT + 2):
        await worker.handle(message)  # type: ignore[arg-type]
        if requeue.copies:
            break
    acker.start()
    await acker.close()
    # One dead copy, and the message acked: nacking it back would make a second copy later.
    assert requeue.copies == ["dlv_1"]
    assert channel.acks == [(1, True)]
