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
from shared.sql import queries
from shared.stores import Connection, connection, transaction

_IDEMPOTENCY_KEYS_SQL = queries("idempotency_keys")
_PARTITIONS_SQL = queries("partitions")

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
PARTITIONED = ("events", "deliveries", "delivery_attempts")

_OLDEST = {
    "events": _PARTITIONS_SQL["oldest_event"],
    "deliveries": _PARTITIONS_SQL["oldest_delivery"],
    "delivery_attempts": _PARTITIONS_SQL["oldest_attempt"],
    "idempotency_keys": _PARTITIONS_SQL["oldest_idempotency_key"],
}


@dataclass(frozen=True, slots=True)
class Period:
    """The partitions of one day (`suffix` `_pYYYYMMDD`) or of the legacy rows (`_legacy`)."""

    suffix: str
    ends_at: datetime

    def name(self, table: str) -> str:
        return table + self.suffix


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
            made: int = await conn.fetchval(_PARTITIONS_SQL["ensure"], DAYS_AHEAD)
            return made

    async def _periods(self) -> list[Period]:
        """The periods any table still has partitions of, oldest first."""
        async with connection(self._pool) as conn:
            rows = await conn.fetch(_PARTITIONS_SQL["list"], list(PARTITIONED))
            legacy_until = await conn.fetchval(_PARTITIONS_SQL["legacy_until"])
        periods: dict[str, Period] = {}
        for row in rows:
            suffix = row["name"].removeprefix(row["parent"])
            if suffix == "_legacy" and legacy_until is not None:
                periods[suffix] = Period(suffix, legacy_until)
            elif suffix.startswith("_p"):
                day = datetime.strptime(suffix[2:], "%Y%m%d").replace(tzinfo=UTC)
                periods[suffix] = Period(suffix, day + timedelta(days=1))
        return sorted(periods.values(), key=lambda p: p.ends_at)

    async def _drop_expired(self, now: datetime) -> tuple[list[str], list[str]]:
        cutoff = now - timedelta(seconds=self._retention_s)
        dropped: list[str] = []
        kept: list[str] = []
        for period in await self._periods():
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
                status = await conn.execute(
                    _IDEMPOTENCY_KEYS_SQL["purge_expired"], self._window_s, KEY_PURGE_BATCH
                )
            count = int(status.split()[-1])
            purged += count
            if count < KEY_PURGE_BATCH:
                break
        if purged:
            RETENTION_ROWS_DROPPED.labels("idempotency_keys").inc(purged)
        return purged

    async def measure(self) -> None:
        """Publish rows, bytes, partitions and oldest row of each table."""
        async with connection(self._pool) as conn:
            rows = await conn.fetch(_PARTITIONS_SQL["list"], list(PARTITIONED))
            keys = await conn.fetchrow(_IDEMPOTENCY_KEYS_SQL["size"])
            assert keys is not None
            oldest = {table: await conn.fetchval(sql) for table, sql in _OLDEST.items()}
        for table in PARTITIONED:
            mine = [r for r in rows if r["parent"] == table]
            TABLE_ROWS.labels(table).set(sum(r["rows"] for r in mine))
            TABLE_SIZE.labels(table).set(sum(r["bytes"] for r in mine))
            TABLE_PARTITIONS.labels(table).set(len(mine))
        TABLE_ROWS.labels("idempotency_keys").set(keys["rows"])
        TABLE_SIZE.labels("idempotency_keys").set(keys["bytes"])
        for table, at in oldest.items():
            TABLE_OLDEST.labels(table).set(at.timestamp() if at is not None else 0)


async def _take_lock(conn: Connection) -> bool:
    """This replica's turn for DDL (until the transaction ends); False while another has it."""
    row = await conn.fetchrow(_PARTITIONS_SQL["take_ddl_lock"], _LOCK_TIMEOUT, _LOCK_ID)
    return bool(row and row["taken"])


async def _drop_period(conn: Connection, period: Period) -> tuple[list[str], bool]:
    """Drop what of one expired period may go (in the caller's transaction).

    Returns the partitions dropped and whether pending deliveries kept its events and
    deliveries. What looks droppable is checked again under the parent tables' locks (which
    DROP takes anyway, taken first so that no query holding a parent waits on a partition),
    so no delivery becomes pending again (a manual retry) between the look and the drop.
    """
    names = {table: period.name(table) for table in PARTITIONED}
    present = {
        table: name
        for table, name in names.items()
        if await conn.fetchval(_PARTITIONS_SQL["exists"], name)
    }
    if not present:
        return [], False
    pending, keep_attempts = await _still_needed(conn, present)
    if pending and keep_attempts:
        return [], True
    await conn.execute(_on(_PARTITIONS_SQL["lock_partitions"], *present.values()))
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
        pending = await conn.fetchval(_on(_PARTITIONS_SQL["pending_in"], present["deliveries"]))
    keep_attempts = False
    if "delivery_attempts" in present:
        keep_attempts = await conn.fetchval(
            _on(_PARTITIONS_SQL["pending_attempts_in"], present["delivery_attempts"])
        )
    else:
        keep_attempts = True
    return pending, keep_attempts


async def _drop(conn: Connection, table: str, partition: str) -> None:
    rows = await conn.fetchval(_PARTITIONS_SQL["estimated_rows"], partition)
    if rows is None:  # never analyzed: small enough to count
        rows = await conn.fetchval(_on(_PARTITIONS_SQL["count_rows"], partition))
    await conn.execute(_on(_PARTITIONS_SQL["drop"], partition))
    RETENTION_PARTITIONS_DROPPED.labels(table).inc()
    RETENTION_ROWS_DROPPED.labels(table).inc(rows)
    log.info("retention_partition_dropped", table=table, partition=partition, rows=rows)


def _on(statement: str, *partitions: str) -> str:
    """`statement` naming `partitions` (names this module made, quoted all the same)."""
    quoted = [_quote(name) for name in partitions]
    return statement.format(partition=quoted[0], partitions=", ".join(quoted))


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
