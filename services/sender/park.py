"""Parking a stuck target at the source: fanout then skips the sender for its new deliveries.

A target that hangs keeps its share of the sender's slots for whole delivery timeouts; every
further delivery of it is consumed, found over its cap and deferred to a retry queue: one
pass through RabbitMQ and the sender per delivery, paid for by every other subscription on a
busy machine (issue 6). Once a target has been stuck for `PARK_AFTER_TIMEOUTS` timeouts, the
sender sets `subscriptions.parked_until` (one UPDATE per park, not per message; the NOTIFY
trigger carries it to every cache) and fanout publishes the target's new deliveries straight
into a retry queue until then (`services.fanout.router`). A quick attempt of a parked target,
i.e. a recovered one, clears the park at once; deliveries parked already still wait out their
queue's delay. Nothing is lost: parked deliveries are ordinary retry-queue messages that come
back to the sender as attempt 1 and are tried as usual.

The park grows with how long the target has been stuck (`shared.retry.park_length`): one
timeout at first, doubling while it stays stuck, capped; fanout rounds the time left down to a
queue delay. A target that hangs for seconds during a deploy thus delays its parked deliveries
by about the shortest retry delay, not minutes; one that stays stuck is parked again, longer.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from enum import Enum

import asyncpg

from shared.logging import get_logger
from shared.retry import park_length
from shared.stores import subscriptions as subscription_store
from shared.subscriptions import SubscriptionTarget

log = get_logger("sender")

PARK_AFTER_TIMEOUTS = 0.5
"""How long, in delivery timeouts, a target refuses slots with no quick attempt (one under
half a timeout, as in `TargetLimits`) before it is parked. A healthy target, however busy,
frees a slot quickly and is never parked; a hanging one is parked about half a timeout after
its slots filled, before fanout has published much more of its backlog."""


class Change(Enum):
    """What `Parking` does to a target's `parked_until`."""

    PARK = "park"
    UNPARK = "unpark"


class Parking:
    """Sets and clears `parked_until`, each at most once per delivery timeout per target.

    The UPDATEs run as background tasks, at most one in flight per target: a slow database
    never holds up a message's ack, and a shutdown never cancels one between a successful
    POST and its ack. `close()` waits for those in flight briefly, then cancels them.
    """

    def __init__(self, pool: asyncpg.Pool, timeout_s: float) -> None:
        self._pool = pool
        self._timeout_s = timeout_s
        self._last_change: dict[tuple[str, Change], float] = {}
        self._inflight: dict[str, asyncio.Task[None]] = {}

    def stuck(self, sub: SubscriptionTarget, stuck_s: float) -> None:
        """Park `sub` when it has been stuck long enough and is not parked (nearly) already."""
        if stuck_s < PARK_AFTER_TIMEOUTS * self._timeout_s:
            return
        now = datetime.now(UTC)
        if sub.parked_until is not None and sub.parked_until > now + timedelta(
            seconds=self._timeout_s
        ):
            return
        park_s = park_length(stuck_s, self._timeout_s)
        self._start(sub.id, Change.PARK, park_s=park_s, stuck_s=round(stuck_s, 1))

    def quick(self, sub: SubscriptionTarget) -> None:
        """Clear the park of `sub` after a quick attempt: its target answers again."""
        if sub.parked_until is None:
            return
        self._start(sub.id, Change.UNPARK)

    async def close(self, grace_s: float = 1.0) -> None:
        """Wait up to `grace_s` for the UPDATEs in flight, then cancel the rest (only an
        optimisation: nothing is lost)."""
        tasks = set(self._inflight.values())
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=grace_s)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)

    def _start(
        self, subscription_id: str, change: Change, *, park_s: float = 0.0, stuck_s: float = 0.0
    ) -> None:
        if subscription_id in self._inflight:
            return
        # The cache learns of the change a moment later (NOTIFY): until then the same target
        # would ask again with every message, so one change per timeout is enough.
        mono = time.monotonic()
        key = (subscription_id, change)
        if mono - self._last_change.get(key, -1e9) < self._timeout_s:
            return
        self._last_change[key] = mono
        task = asyncio.create_task(
            self._change(subscription_id, change, park_s=park_s, stuck_s=stuck_s),
            name=f"park-{subscription_id}",
        )
        self._inflight[subscription_id] = task
        task.add_done_callback(lambda _: self._inflight.pop(subscription_id, None))

    async def _change(
        self, subscription_id: str, change: Change, *, park_s: float, stuck_s: float
    ) -> None:
        try:
            if change is Change.PARK:
                await subscription_store.park(self._pool, subscription_id, park_s)
            else:
                await subscription_store.unpark(self._pool, subscription_id)
        except Exception as exc:
            # Only an optimisation: the deliveries are deferred by the sender as before.
            log.warning(
                "subscription_park_failed", subscription_id=subscription_id, error=repr(exc)
            )
            return
        if change is Change.PARK:
            log.warning(
                "subscription_parked",
                subscription_id=subscription_id,
                stuck_s=stuck_s,
                park_s=park_s,
            )
        else:
            log.info("subscription_unparked", subscription_id=subscription_id)
