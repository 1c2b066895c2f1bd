"""Disabling subscriptions: at once on `410 Gone`, and by a periodic sweep when failing.

The `failing` rule (`HOOKLINE_DISABLE_AFTER`, 5 days by default): a subscription is disabled
only when it has had no successful attempt for that long while attempts kept failing all
along, i.e. its current failing streak (`subscriptions.failing_since`, the first failure after
the last success, kept by the attempt log) began at least `disable_after` ago AND an attempt
failed at least `disable_after` after the streak began. One exhausted delivery is not enough:
its retries span less than the default window (about 3 days), and a receiver that was down
for a few hours and came back is never disabled. Re-enabling through the API clears the
streak, so the clock starts again.

Disabling cancels the subscription's pending deliveries; messages of them still queued are
recorded `cancelled` when they come back (the sender's cache then sees the subscription
disabled).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

import asyncpg

from shared.errors import DATABASE_ERRORS
from shared.logging import get_logger
from shared.metrics import SUBSCRIPTIONS_DISABLED
from shared.stores import Connection, deliveries, subscriptions

log = get_logger("disable")


async def disable(
    conn: Connection,
    subscription_ids: list[str],
    reason: str,
    *,
    keep_delivery_ids: tuple[str, ...] = (),
) -> list[str]:
    """Disable the enabled ones of `subscription_ids` and cancel their pending deliveries.

    `keep_delivery_ids` are left as they are (the delivery that got the 410 is recorded
    `failed` by the attempt log). Returns the ids this call disabled.
    """
    async with conn.transaction():
        disabled = await subscriptions.disable(conn, subscription_ids, reason)
        if disabled:
            await deliveries.cancel_pending_of_disabled(conn, disabled, list(keep_delivery_ids))
    for sub_id in disabled:
        SUBSCRIPTIONS_DISABLED.labels(reason).inc()
        log.warning("subscription_disabled", subscription_id=sub_id, reason=reason)
    return disabled


async def sweep_failing(conn: Connection, disable_after_s: float) -> list[str]:
    """Disable (`failing`) every subscription the rule above condemns; returns their ids."""
    condemned = await subscriptions.failing_too_long(conn, timedelta(seconds=disable_after_s))
    if not condemned:
        return []
    return await disable(conn, condemned, "failing")


def sweep_interval_s(disable_after_s: float) -> float:
    """How often to sweep: a tenth of the window, between 1 s and 5 minutes."""
    return min(300.0, max(1.0, disable_after_s / 10))


async def run_sweeper(pool: asyncpg.Pool, disable_after_s: float, stop: asyncio.Event) -> None:
    """Sweep every `sweep_interval_s` until `stop`; a failed sweep is tried at the next tick."""
    interval_s = sweep_interval_s(disable_after_s)
    while not stop.is_set():
        try:
            async with pool.acquire() as conn:
                await sweep_failing(conn, disable_after_s)
        except DATABASE_ERRORS as exc:
            log.warning("failing_sweep_failed", error=f"{type(exc).__name__}: {exc}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)
