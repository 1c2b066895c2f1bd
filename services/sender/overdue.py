"""The overdue sweep: the safety net for a delivery whose message was lost.

A pending delivery's message is always somewhere: in `{ns}.fanout` (its event), in
`{ns}.deliveries`, in a retry queue, or in a sender's hands. If a queue is deleted by hand or
a node is lost with a queue's messages, the row stays `pending` and nothing will ever send
it. The sweep finds such rows and publishes them again, once, counted in
`hookline_overdue_deliveries_republished_total` and logged as `overdue_delivery_republished`.

How it knows a row has no live message (it never re-sends one that has on purpose):
- its due time (`next_attempt_at`, set whenever its message was handed on to wait in a retry
  queue, else `created_at`) is more than `HOOKLINE_OVERDUE_AFTER` (default 1 h) in the past:
  far longer than any message waits past its TTL once the queues flow;
- `{ns}.fanout` and `{ns}.deliveries` had no ready message at two passes in a row: no
  backlog holds its event or its message;
- it was a candidate, unchanged (`updated_at`), at the previous pass too, a pass interval
  earlier (at most 5 min, at least two delivery timeouts): a message a sender held at the
  first pass (its prefetch window) has been settled by the second, which changes the row.
Rows are claimed with `FOR UPDATE SKIP LOCKED`, so several sender replicas never publish the
same one, and its `next_attempt_at` is moved to now once its copy is confirmed. One owner:
the sender, whose work queue the copy goes to; the task is supervised.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from typing import Any

import aiormq
import asyncpg
from aio_pika.abc import AbstractRobustConnection

from services.sender.requeue import Requeue
from shared.errors import TRANSIENT_ERRORS
from shared.logging import get_logger
from shared.metrics import OVERDUE_REPUBLISHED
from shared.models import webhook_body
from shared.settings import Settings
from shared.stores import deliveries
from shared.topology import Topology
from shared.wire.messages import DeliveryMessage

log = get_logger("sender")

BATCH_MAX = 500
PASS_MAX_S = 300.0


class OverdueSweep:
    """Publishes again the pending deliveries that lost their message (see the module)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        requeue: Requeue,
        topology: Topology,
        settings: Settings,
        connection: AbstractRobustConnection,
    ) -> None:
        self._pool = pool
        self._requeue = requeue
        self._topology = topology
        self._overdue_s = settings.overdue_after
        self._max_attempts = settings.max_attempts
        self._connection = connection
        # Longer than a message can sit in a sender's hands unchanged (a POST and its wait
        # for a slot), so the second look at a candidate is after any such message settled.
        self.interval_s = max(
            min(self._overdue_s / 2, PASS_MAX_S), 2 * settings.delivery_timeout + 1
        )
        self._previous: dict[str, datetime] | None = None
        """Candidates of the previous pass (id -> updated_at), None when it did not count."""

    async def run(self, stop: asyncio.Event) -> None:
        """Sweep every `interval_s` until `stop`; an outage skips a pass, never ends it."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval_s)
            if stop.is_set():
                return
            try:
                await self.sweep()
            except TRANSIENT_ERRORS as exc:
                self._previous = None
                log.warning("overdue_sweep_skipped", error=f"{type(exc).__name__}: {exc}")

    async def sweep(self) -> int:
        """One pass; returns how many deliveries it published again."""
        if not await self._queues_drained():
            self._previous = None
            return 0
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await deliveries.overdue(conn, self._overdue_s, BATCH_MAX)
            current = {row["id"]: row["updated_at"] for row in rows}
            previous, self._previous = self._previous, current
            if previous is None:
                return 0
            due = [row for row in rows if previous.get(row["id"]) == row["updated_at"]]
            for row in due:
                await self._requeue.alone(self._message(row))
            if due:
                await deliveries.handed_on(conn, [row["id"] for row in due])
        for row in due:
            self._previous.pop(row["id"], None)
            OVERDUE_REPUBLISHED.inc()
            log.warning(
                "overdue_delivery_republished",
                delivery_id=row["id"],
                subscription_id=row["subscription_id"],
                attempts=row["attempts"],
            )
        return len(due)

    def _message(self, row: Any) -> DeliveryMessage:
        return DeliveryMessage(
            delivery_id=row["id"],
            event_id=row["event_id"],
            subscription_id=row["subscription_id"],
            event_type=row["type"],
            body=webhook_body(row["type"], row["created_at"], row["data"]),
            attempt=min(row["attempts"] + 1, self._max_attempts),
            accepted_at=row["created_at"].timestamp(),
        )

    async def _queues_drained(self) -> bool:
        """True when neither the fanout queue nor the work queue has a ready message."""
        for queue in (self._topology.fanout_queue, self._topology.deliveries_queue):
            if await self._ready_count(queue.name) > 0:
                return False
        return True

    async def _ready_count(self, name: str) -> int:
        # A channel of its own: a passive declare of a missing queue closes its channel.
        channel = await self._connection.channel()
        try:
            queue = await channel.declare_queue(name, passive=True, robust=False)
            return int(queue.declaration_result.message_count or 0)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return 0
        finally:
            with contextlib.suppress(Exception):
                await channel.close()
