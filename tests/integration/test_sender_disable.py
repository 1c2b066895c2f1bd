"""Auto-disable (`failing`): the streak kept by the sender, and the sweep's rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg

from services.sender.disable import sweep_failing
from shared.metrics import SUBSCRIPTIONS_DISABLED
from shared.settings import Settings
from tests.support.sender import (
    Answer,
    Receiver,
    database,
    insert_delivery,
    insert_subscription,
    publish,
    sender_running,
    wait_for_status,
)

FIVE_DAYS_S = 5 * 86400.0


async def test_failures_start_a_streak_and_a_success_ends_it(settings: Settings) -> None:
    receiver = Receiver(Answer(500), Answer(500), Answer(500), Answer(200))
    async with receiver.running(), database(settings) as conn, sender_running(settings):
        sub_id, _ = await insert_subscription(conn, receiver.url())
        first = await insert_delivery(conn, sub_id)
        await publish(settings, first)
        await wait_for_status(conn, first.delivery_id, "failed")
        failing_since = await conn.fetchval(
            "SELECT failing_since FROM subscriptions WHERE id = $1", sub_id
        )
        first_attempt_at = await conn.fetchval(
            "SELECT min(attempted_at) FROM delivery_attempts WHERE delivery_id = $1",
            first.delivery_id,
        )

        second = await insert_delivery(conn, sub_id)
        await publish(settings, second)
        await wait_for_status(conn, second.delivery_id, "succeeded")
        after_success = await conn.fetchrow("SELECT * FROM subscriptions WHERE id = $1", sub_id)

    assert failing_since == first_attempt_at
    assert after_success["failing_since"] is None
    assert after_success["status"] == "enabled"


async def _failing_subscription(
    conn: asyncpg.Connection, since_days: float, failed_days_ago: list[float]
) -> tuple[str, str]:
    """A subscription failing since `since_days` ago, with failed attempts at the given ages;
    returns (subscription id, one of its pending deliveries)."""
    now = datetime.now(UTC)
    sub_id, _ = await insert_subscription(conn, "http://127.0.0.1:9/hook")
    await conn.execute(
        "UPDATE subscriptions SET failing_since = $2 WHERE id = $1",
        sub_id,
        now - timedelta(days=since_days),
    )
    for days in failed_days_ago:
        msg = await insert_delivery(conn, sub_id)
        await conn.execute(
            "INSERT INTO delivery_attempts (delivery_id, attempt, attempted_at, status_code,"
            " duration_ms, outcome) VALUES ($1, 1, $2, 500, 10, 'failed')",
            msg.delivery_id,
            now - timedelta(days=days),
        )
    pending = await insert_delivery(conn, sub_id)
    return sub_id, pending.delivery_id


async def test_the_sweep_disables_only_subscriptions_failing_all_along(
    settings: Settings,
) -> None:
    disabled_before = SUBSCRIPTIONS_DISABLED.labels("failing")._value.get()
    async with database(settings) as conn:
        # Failing for 10 days, still failing an hour ago: condemned.
        kept_failing, its_pending = await _failing_subscription(conn, 10, [9.9, 0.04])
        # Failed 10 days ago, nothing since: no evidence it still fails.
        went_quiet, _ = await _failing_subscription(conn, 10, [9.9])
        # Failing, but for less than the window (one exhausted delivery, say).
        recent, _ = await _failing_subscription(conn, 3, [2.9, 0.01])

        disabled = await sweep_failing(conn, FIVE_DAYS_S)
        rows = {
            r["id"]: r
            for r in await conn.fetch("SELECT id, status, disabled_reason FROM subscriptions")
        }
        pending_status = await conn.fetchval(
            "SELECT status FROM deliveries WHERE id = $1", its_pending
        )
        again = await sweep_failing(conn, FIVE_DAYS_S)

    assert disabled == [kept_failing]
    assert (rows[kept_failing]["status"], rows[kept_failing]["disabled_reason"]) == (
        "disabled",
        "failing",
    )
    assert rows[went_quiet]["status"] == "enabled"
    assert rows[recent]["status"] == "enabled"
    assert pending_status == "cancelled"
    assert again == []
    assert SUBSCRIPTIONS_DISABLED.labels("failing")._value.get() == disabled_before + 1
