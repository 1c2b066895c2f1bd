"""The attempt log's batching (group commit, retry while the database is down) and its
bookkeeping of failing streaks, with a fake pool."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.sender.attempt_log import (
    AttemptLog,
    AttemptRow,
    DeliveryChange,
    failing_transitions,
)
from services.sender.limits import TargetLimits

T0 = datetime(2024, 5, 1, tzinfo=UTC)


def change(sub: str, outcome: str | None, at_s: float = 0.0, dlv: str = "dlv_1") -> DeliveryChange:
    row = None
    if outcome is not None:
        row = AttemptRow(dlv, 1, T0 + timedelta(seconds=at_s), 200, 5, outcome, None, None, "")
    return DeliveryChange(dlv, sub, "pending", row)


class FakePool:
    """Lends a dummy connection; the writer decides what happens."""

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[object]:
        yield object()


async def test_changes_are_written_in_one_batch_and_each_caller_returns_after_it() -> None:
    batches: list[list[DeliveryChange]] = []

    async def writer(conn: Any, batch: list[DeliveryChange]) -> None:
        batches.append(batch)

    log = AttemptLog(FakePool(), flush_interval_s=0.01, writer=writer)  # type: ignore[arg-type]
    log.start()
    await asyncio.gather(*(log.record(change("sub_a", "success", dlv=f"d{i}")) for i in range(50)))
    await log.close(1.0)

    assert sum(len(b) for b in batches) == 50
    assert len(batches) < 5


async def test_a_full_batch_is_written_without_waiting_for_the_interval() -> None:
    written: list[int] = []

    async def writer(conn: Any, batch: list[DeliveryChange]) -> None:
        written.append(len(batch))

    log = AttemptLog(FakePool(), flush_interval_s=60.0, max_rows=3, writer=writer)  # type: ignore[arg-type]
    log.start()
    await asyncio.wait_for(
        asyncio.gather(*(log.record(change("s", "success", dlv=f"d{i}")) for i in range(3))), 5
    )
    await log.close(1.0)
    assert written == [3]


async def test_while_the_database_is_down_callers_wait_and_readiness_is_false() -> None:
    failures = 2
    healthy_seen: list[bool] = []

    async def writer(conn: Any, batch: list[DeliveryChange]) -> None:
        nonlocal failures
        if failures:
            failures -= 1
            raise OSError("connection refused")

    log = AttemptLog(FakePool(), flush_interval_s=0.001, writer=writer)  # type: ignore[arg-type]
    log.start()
    pending = asyncio.create_task(log.record(change("s", "success")))
    await asyncio.sleep(0.05)
    healthy_seen.append(log.healthy)
    assert not pending.done()
    await asyncio.wait_for(pending, 5)
    healthy_seen.append(log.healthy)
    await log.close(1.0)
    assert healthy_seen == [False, True]


async def test_closing_while_the_database_is_down_leaves_callers_unanswered() -> None:
    async def writer(conn: Any, batch: list[DeliveryChange]) -> None:
        raise OSError("down")

    log = AttemptLog(FakePool(), flush_interval_s=0.001, writer=writer)  # type: ignore[arg-type]
    log.start()
    pending = asyncio.create_task(log.record(change("s", "success")))
    await asyncio.sleep(0.02)
    await log.close(0.2)
    with pytest.raises(asyncio.CancelledError):
        await pending


def test_a_streak_begins_at_the_first_failure_and_a_success_ends_it() -> None:
    cleared, started = failing_transitions(
        [change("a", "retry", 2), change("a", "failed", 1), change("b", "success", 1)]
    )
    assert cleared == ["b"]
    assert started == [("a", T0 + timedelta(seconds=1), False)]


def test_failures_after_a_success_in_the_same_batch_restart_the_streak() -> None:
    cleared, started = failing_transitions(
        [change("a", "retry", 1), change("a", "success", 2), change("a", "retry", 3)]
    )
    assert cleared == []
    assert started == [("a", T0 + timedelta(seconds=3), True)]


def test_cancellations_and_gone_do_not_count() -> None:
    assert failing_transitions([change("a", None), change("b", "gone")]) == ([], [])


def test_a_target_gets_at_most_its_share_of_slots() -> None:
    limits = TargetLimits(2)
    assert limits.try_acquire("a") and limits.try_acquire("a")
    assert not limits.try_acquire("a")
    assert limits.try_acquire("b")
    limits.release("a")
    assert limits.try_acquire("a")
    limits.release("a")
    limits.release("a")
    assert limits.held("a") == 0


def test_a_target_whose_slots_free_only_slowly_counts_as_stuck() -> None:
    now = [100.0]
    limits = TargetLimits(1, quick_s=1.0, clock=lambda: now[0])
    assert limits.try_acquire("hanging")
    for _ in range(12):  # its backlog keeps knocking, once a second
        assert not limits.try_acquire("hanging")
        now[0] += 1
    limits.release("hanging", took_s=15.0)  # a timeout: the slot freed, but slowly
    assert limits.try_acquire("hanging")
    assert not limits.try_acquire("hanging")
    assert limits.stuck_for("hanging") == 12


def test_a_quick_attempt_or_an_idle_target_is_not_stuck() -> None:
    now = [0.0]
    limits = TargetLimits(1, quick_s=1.0, clock=lambda: now[0])
    assert limits.try_acquire("busy") and not limits.try_acquire("busy")
    now[0] += 5
    limits.release("busy", took_s=0.01)
    assert limits.stuck_for("busy") == 0.0
    assert limits.try_acquire("slow") and not limits.try_acquire("slow")
    limits.release("slow", took_s=30.0)
    now[0] += 60  # no refusal for a long while: the spell is over
    assert limits.stuck_for("slow") == 0.0


async def test_a_bug_in_one_batch_fails_its_callers_and_the_log_goes_on() -> None:
    calls = 0

    async def writer(conn: Any, batch: list[DeliveryChange]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug, not an outage")

    log = AttemptLog(FakePool(), flush_interval_s=0.01, writer=writer)  # type: ignore[arg-type]
    log.start()
    try:
        with pytest.raises(RuntimeError, match="a bug"):
            await log.record(change("sub_1", "success"))
        # The writer survived: later records are written, and the log still reports healthy.
        await log.record(change("sub_1", "success", dlv="dlv_2"))
        assert log.healthy and calls == 2
    finally:
        await log.close(1.0)


def test_a_nul_in_an_error_cannot_fail_the_batch() -> None:
    row = change("sub_1", "retry").attempt
    assert row is not None
    broken = AttemptRow(**{**{f: getattr(row, f) for f in row.__slots__}, "error": "bad\x00byte"})
    assert "\x00" not in str(broken.as_record())
