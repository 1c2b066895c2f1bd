"""Retention: ingest creates the daily partitions ahead of time and drops expired ones whole.

Events, deliveries and delivery attempts are partitioned by day (migration 0007). Ingest
owns the partitions because it writes the first row of everything kept: an event is
stored before any delivery or attempt of it exists, and a delivery lies in its event's
day; one owner keeps three services from racing the same DDL, and a transaction-scoped
advisory lock keeps replicas of ingest taking turns. Every pass (each minute):
- creates the partitions of yesterday to `DAYS_AHEAD` days ahead that do not exist yet;
- drops, for each day (or the legacy partitions from before partitioning) that ended more
  than `HOOKLINE_RETENTION` ago, its events and deliveries once none of those deliveries is
  pending (a pending one, retrying or not, keeps its whole day), and its attempts once no
  pending delivery has an attempt among them: `DROP TABLE`, no row-by-row DELETE;
- deletes the idempotency keys past their window (small rows, in bounded batches);
- publishes rows, bytes, oldest row and partitions per table (`hookline_table_*`).

This module is the policy; the statements and the DDL it runs are `shared/stores/partitions.py`'s
and `shared/stores/idempotency_keys.py`'s.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from shared.errors import DATABASE_ERRORS, StorageUnavailable
from shared.logging import get_logger
from shared.metrics import (
    RETENTION_PARTITIONS_DROPPED,
    RETENTION_ROWS_DROPPED,
    TABLE_OLDEST,
    TABLE_PARTITIONS,
    TABLE_ROWS,
    TABLE_SIZE,
)
from shared.stores import Connection, connection, idempotency_keys, partitions, transaction
from shared.stores.partitions import PARTITIONED, Period

log = get_logger("retention")

PASS_INTERVAL_S = 60.0
DAYS_AHEAD = 7
"""Partitions made ahead: a week without a running ingest still finds its days in place."""
KEY_PURGE_BATCH = 10_000
KEY_PURGE_BATCHES_PER_PASS = 50
_LOCK_ID = 7214016
_LOCK_TIMEOUT = "5s"
"""DDL waits this long for its lock, then gives up until the next pass, so a long query on
a table never queues every other query behind a waiting DROP or CREATE."""
_PASS_ERRORS: tuple[type[BaseException], ...] = (StorageUnavailable, *DATABASE_ERRORS)


@dataclass(frozen=True, slots=True)
class PassResult:
    created: int
    dropped: list[str]
    kept_pending: list[str]
    keys_purged: int


class Retention:
    """Runs retention passes against one database until stopped."""

    def __init__(self, pool: asyncpg.Pool, *, retention_s: float, window_s: float) -> None:
        self._pool = pool
        self._retention_s = retention_s
        self._window_s = window_s

    async def run(self, stop: asyncio.Event) -> None:
        """A pass now and every PASS_INTERVAL_S until `stop`; a failing pass is retried."""
        while not stop.is_set():
            try:
                await self.pass_once()
            except _PASS_ERRORS as exc:
                log.warning("retention_pass_failed", error=str(exc))
            try:
                await asyncio.wait_for(stop.wait(), PASS_INTERVAL_S)
            except TimeoutError:
                pass

    async def pass_once(self, now: datetime | None = None) -> PassResult:
        """One pass (see the module): partitions ahead, expired ones dropped, keys purged."""
        created = await self._ensure()
        dropped, kept = await self._drop_expired(now or datetime.now(UTC))
        purged = await self._purge_keys()
        await self.measure()
        if created or dropped or purged:
            log.info(
                "retention_pass_done",
                partitions_created=created,
                partitions_dropped=len(dropped),
                keys_purged=purged,
            )
        return PassResult(created, dropped, kept, purged)

    async def _ensure(self) -> int:
        async with transaction(self._pool) as conn:
            if not await _take_lock(conn):
                return 0
            return await partitions.ensure(conn, DAYS_AHEAD)

    async def _drop_expired(self, now: datetime) -> tuple[list[str], list[str]]:
        cutoff = now - timedelta(seconds=self._retention_s)
        dropped: list[str] = []
        kept: list[str] = []
        async with connection(self._pool) as conn:
            periods = await partitions.periods(conn)
        for period in periods:
            if period.ends_at > cutoff:
                break
            async with transaction(self._pool) as conn:
                if not await _take_lock(conn):
                    return dropped, kept
                gone, pending = await _drop_period(conn, period)
            dropped += gone
            if pending:
                kept.append(period.suffix)
                log.info("retention_period_kept", period=period.suffix, reason="pending")
        return dropped, kept

    async def _purge_keys(self) -> int:
        purged = 0
        for _ in range(KEY_PURGE_BATCHES_PER_PASS):
            async with connection(self._pool) as conn:
                count = await idempotency_keys.purge_expired(conn, self._window_s, KEY_PURGE_BATCH)
            purged += count
            if count < KEY_PURGE_BATCH:
                break
        if purged:
            RETENTION_ROWS_DROPPED.labels("idempotency_keys").inc(purged)
        return purged

    async def measure(self) -> None:
        """Publish rows, bytes, partitions and oldest row of each table."""
        async with connection(self._pool) as conn:
            found = await partitions.list_partitions(conn)
            key_rows, key_bytes = await idempotency_keys.size(conn)
            oldest = await partitions.oldest_rows(conn)
        for table in PARTITIONED:
            mine = [p for p in found if p.parent == table]
            TABLE_ROWS.labels(table).set(sum(p.rows for p in mine))
            TABLE_SIZE.labels(table).set(sum(p.bytes for p in mine))
            TABLE_PARTITIONS.labels(table).set(len(mine))
        TABLE_ROWS.labels("idempotency_keys").set(key_rows)
        TABLE_SIZE.labels("idempotency_keys").set(key_bytes)
        for table, at in oldest.items():
            TABLE_OLDEST.labels(table).set(at.timestamp() if at is not None else 0)


async def _take_lock(conn: Connection) -> bool:
    """This replica's turn for DDL (until the transaction ends); False while another has it."""
    return await partitions.take_ddl_lock(conn, _LOCK_ID, _LOCK_TIMEOUT)


async def _drop_period(conn: Connection, period: Period) -> tuple[list[str], bool]:
    """Drop what of one expired period may go (in the caller's transaction).

    Returns the partitions dropped and whether pending deliveries kept its events and
    deliveries. What looks droppable is checked again under the parent tables' locks (which
    DROP takes anyway, taken first so that no query holding a parent waits on a partition),
    so no delivery becomes pending again (a manual retry) between the look and the drop.
    """
    names = {table: period.name(table) for table in PARTITIONED}
    present = {table: name for table, name in names.items() if await partitions.exists(conn, name)}
    if not present:
        return [], False
    pending, keep_attempts = await _still_needed(conn, present)
    if pending and keep_attempts:
        return [], True
    await partitions.lock(conn, list(present.values()))
    pending, keep_attempts = await _still_needed(conn, present)
    dropped: list[str] = []
    if not pending:
        for table in ("deliveries", "events"):
            if table in present:
                await _drop(conn, table, present[table])
                dropped.append(present[table])
    if not keep_attempts:
        await _drop(conn, "delivery_attempts", present["delivery_attempts"])
        dropped.append(present["delivery_attempts"])
    return dropped, pending


async def _still_needed(conn: Connection, present: dict[str, str]) -> tuple[bool, bool]:
    """(a delivery of the period is pending, its attempts must stay: a pending delivery has
    one among them, or there is no attempts partition to drop)."""
    pending = False
    if "deliveries" in present:
        pending = await partitions.has_pending(conn, present["deliveries"])
    keep_attempts = True
    if "delivery_attempts" in present:
        keep_attempts = await partitions.has_pending_attempts(conn, present["delivery_attempts"])
    return pending, keep_attempts


async def _drop(conn: Connection, table: str, partition: str) -> None:
    rows = await partitions.drop(conn, partition)
    RETENTION_PARTITIONS_DROPPED.labels(table).inc()
    RETENTION_ROWS_DROPPED.labels(table).inc(rows)
    log.info("retention_partition_dropped", table=table, partition=partition, rows=rows)
