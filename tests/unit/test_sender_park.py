"""Parking a stuck target: its UPDATEs never run on a message's path, one per target at most."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import asyncpg

from services.sender.park import Parking
from shared.subscriptions import SubscriptionTarget

TIMEOUT_S = 2.0


class SlowPool:
    """A pool whose UPDATEs wait until released (or fail, when told to)."""

    def __init__(self, *, error: Exception | None = None) -> None:
        self.release = asyncio.Event()
        self.calls: list[tuple[Any, ...]] = []
        self.error = error

    async def execute(self, sql: str, *args: Any) -> str:
        self.calls.append((sql, *args))
        if self.error is not None:
            raise self.error
        await self.release.wait()
        return "UPDATE 1"


def _sub(sub_id: str, parked_until: datetime | None = None) -> SubscriptionTarget:
    return SubscriptionTarget(
        id=sub_id,
        url="http://127.0.0.1:1/hook",
        event_types=("*",),
        enabled=True,
        tenant_id=None,
        keys=(b"k" * 32,),
        previous_key_expires_at=None,
        parked_until=parked_until,
    )


def _parking(pool: SlowPool) -> Parking:
    return Parking(cast(asyncpg.Pool, pool), TIMEOUT_S)


async def test_a_slow_database_does_not_hold_up_the_caller_and_runs_one_update_per_target() -> None:
    pool = SlowPool()
    parking = _parking(pool)
    parked = _sub("sub_a", datetime.now(UTC) + timedelta(seconds=30))

    parking.quick(parked)  # returns at once although the UPDATE hangs
    parking.stuck(_sub("sub_a"), stuck_s=10 * TIMEOUT_S)  # one in flight for sub_a already
    parking.stuck(_sub("sub_b"), stuck_s=TIMEOUT_S / 2)
    await asyncio.sleep(0.01)
    assert sorted(call[1] for call in pool.calls) == ["sub_a", "sub_b"]

    pool.release.set()
    await parking.close()
    # sub_b is parked for one timeout: stuck only briefly, parked only briefly.
    [park] = [call for call in pool.calls if call[1] == "sub_b"]
    assert park[2] == TIMEOUT_S


async def test_a_failing_update_is_logged_not_raised() -> None:
    pool = SlowPool(error=asyncpg.PostgresConnectionError("down"))
    parking = _parking(pool)
    parking.stuck(_sub("sub_a"), stuck_s=TIMEOUT_S)
    await parking.close()
    assert len(pool.calls) == 1


async def test_close_cancels_an_update_that_does_not_finish() -> None:
    pool = SlowPool()
    parking = _parking(pool)
    parking.stuck(_sub("sub_a"), stuck_s=TIMEOUT_S)
    await asyncio.sleep(0)
    await asyncio.wait_for(parking.close(grace_s=0.05), 5)
    # Closed: nothing left in flight, so a new change may start.
    parking.stuck(_sub("sub_b"), stuck_s=TIMEOUT_S)
    pool.release.set()
    await parking.close()
    assert [call[1] for call in pool.calls] == ["sub_a", "sub_b"]
