"""The attempt log against Postgres: a late change of an older copy of a message never
rewrites a delivery's settled status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from services.sender.attempt_log import AttemptRow, DeliveryChange, write_batch
from shared.settings import Settings
from tests.support.sender import database, insert_delivery, insert_subscription


def _change(
    dlv: str, sub: str, status: str, outcome: str, *, retry: bool = False
) -> DeliveryChange:
    now = datetime.now(UTC)
    row = AttemptRow(dlv, 1, now, 500, 5, outcome, None, None, "")
    return DeliveryChange(dlv, sub, status, row, now + timedelta(seconds=5) if retry else None)


async def _status(conn: asyncpg.Connection, dlv: str) -> tuple[str, object]:
    row = await conn.fetchrow("SELECT status, next_attempt_at FROM deliveries WHERE id = $1", dlv)
    assert row is not None
    return row["status"], row["next_attempt_at"]


@pytest.mark.parametrize("late", ["failed", "pending"])
async def test_a_late_change_never_undoes_a_success(settings: Settings, late: str) -> None:
    async with database(settings) as conn:
        sub, _ = await insert_subscription(conn, "http://127.0.0.1:1/hook")
        dlv = (await insert_delivery(conn, sub)).delivery_id
        await write_batch(conn, [_change(dlv, sub, "succeeded", "success")])
        await write_batch(
            conn,
            [
                _change(
                    dlv,
                    sub,
                    late,
                    "retry" if late == "pending" else "failed",
                    retry=late == "pending",
                )
            ],
        )
        assert await _status(conn, dlv) == ("succeeded", None)
        # In one batch too: the success first, the older copy's change after it.
        other = (await insert_delivery(conn, sub)).delivery_id
        await write_batch(
            conn,
            [
                _change(other, sub, "succeeded", "success"),
                _change(
                    other,
                    sub,
                    late,
                    "retry" if late == "pending" else "failed",
                    retry=late == "pending",
                ),
            ],
        )
        assert await _status(conn, other) == ("succeeded", None)


async def test_failed_replaces_pending_but_not_cancelled(settings: Settings) -> None:
    async with database(settings) as conn:
        sub, _ = await insert_subscription(conn, "http://127.0.0.1:1/hook")
        pending = (await insert_delivery(conn, sub)).delivery_id
        cancelled = (await insert_delivery(conn, sub)).delivery_id
        await write_batch(conn, [DeliveryChange(cancelled, sub, "cancelled")])
        await write_batch(
            conn,
            [
                _change(pending, sub, "failed", "failed"),
                _change(cancelled, sub, "failed", "failed"),
            ],
        )
        assert (await _status(conn, pending))[0] == "failed"
        assert (await _status(conn, cancelled))[0] == "cancelled"
        # A success of a failed delivery (a redriven one) still counts.
        await write_batch(conn, [_change(pending, sub, "succeeded", "success")])
        assert (await _status(conn, pending))[0] == "succeeded"


@pytest.mark.parametrize("settled", ["cancelled", "failed", "succeeded"])
async def test_a_handed_on_mark_never_reopens_a_settled_delivery(
    settings: Settings, settled: str
) -> None:
    # The copy of a delivery split off a batch can be handled (cancelled, dead-lettered)
    # before the mark saying it travels on its own is written.
    async with database(settings) as conn:
        sub, _ = await insert_subscription(conn, "http://127.0.0.1:1/hook")
        later = datetime.now(UTC) + timedelta(minutes=5)

        def mark(dlv: str) -> DeliveryChange:
            return DeliveryChange(dlv, sub, "pending", None, later)

        def settle(dlv: str) -> DeliveryChange:
            if settled == "cancelled":
                return DeliveryChange(dlv, sub, "cancelled")
            return _change(dlv, sub, settled, "success" if settled == "succeeded" else "failed")

        apart = (await insert_delivery(conn, sub)).delivery_id
        await write_batch(conn, [settle(apart)])
        await write_batch(conn, [mark(apart)])
        together = (await insert_delivery(conn, sub)).delivery_id
        await write_batch(conn, [settle(together), mark(together)])
        fresh = (await insert_delivery(conn, sub)).delivery_id
        await write_batch(conn, [mark(fresh)])

        assert await _status(conn, apart) == (settled, None)
        assert await _status(conn, together) == (settled, None)
        assert await _status(conn, fresh) == ("pending", later)
