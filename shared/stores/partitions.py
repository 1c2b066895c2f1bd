"""The daily partitions of events, deliveries and delivery_attempts: their catalogue and DDL.

`services/ingest/retention.py` decides what is made and dropped, and when; this module runs
every statement of `shared/sql/partitions.sql` for it. Each function takes the caller's
connection, since the DDL lock, the second look at a period and its drop share one
transaction. A partition is named by an identifier, which a parameter cannot carry: the
statements naming one are filled in here with `quote_identifier`.

A partition is its table's name and a suffix (`hookline_ensure_partitions`, migration 0007):
`_pYYYYMMDD` holds the rows of one UTC day, `_legacy` those from before partitioning.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shared.sql import queries, quote_identifier
from shared.stores import Connection

_PARTITIONS_SQL = queries("partitions").require(
    "ensure",
    "list",
    "legacy_until",
    "estimated_rows",
    "oldest_event",
    "oldest_delivery",
    "oldest_attempt",
    "oldest_idempotency_key",
    "take_ddl_lock",
    "exists",
    "lock_partitions",
    "pending_in",
    "pending_attempts_in",
    "count_rows",
    "drop",
)

PARTITIONED = ("events", "deliveries", "delivery_attempts")
"""The tables partitioned by day (migration 0007)."""

_OLDEST = {
    "events": _PARTITIONS_SQL["oldest_event"],
    "deliveries": _PARTITIONS_SQL["oldest_delivery"],
    "delivery_attempts": _PARTITIONS_SQL["oldest_attempt"],
    "idempotency_keys": _PARTITIONS_SQL["oldest_idempotency_key"],
}


@dataclass(frozen=True, slots=True)
class Partition:
    parent: str
    name: str
    bytes: int
    rows: float
    """The planner's estimate (0 before the partition was first analyzed)."""


@dataclass(frozen=True, slots=True)
class Period:
    """The partitions of one day (`suffix` `_pYYYYMMDD`) or of the legacy rows (`_legacy`)."""

    suffix: str
    ends_at: datetime

    def name(self, table: str) -> str:
        return table + self.suffix


async def take_ddl_lock(conn: Connection, lock_id: int, lock_timeout: str) -> bool:
    """This caller's turn for DDL until its transaction ends; False while another has it.

    DDL in that transaction then waits at most `lock_timeout` (a text such as '5s') for the
    locks of the tables it changes.
    """
    row = await conn.fetchrow(_PARTITIONS_SQL["take_ddl_lock"], lock_timeout, lock_id)
    return bool(row and row["taken"])


async def ensure(conn: Connection, days_ahead: int) -> int:
    """Create the missing partitions of yesterday to `days_ahead` days ahead; how many."""
    made: int = await conn.fetchval(_PARTITIONS_SQL["ensure"], days_ahead)
    return made


async def list_partitions(conn: Connection) -> list[Partition]:
    """Every partition of the tables in `PARTITIONED`, with its size."""
    rows = await conn.fetch(_PARTITIONS_SQL["list"], list(PARTITIONED))
    return [Partition(r["parent"], r["name"], r["bytes"], r["rows"]) for r in rows]


async def periods(conn: Connection) -> list[Period]:
    """The periods any table still has partitions of, oldest first."""
    found = await list_partitions(conn)
    legacy_until: datetime | None = await conn.fetchval(_PARTITIONS_SQL["legacy_until"])
    by_suffix: dict[str, Period] = {}
    for partition in found:
        suffix = partition.name.removeprefix(partition.parent)
        if suffix == "_legacy" and legacy_until is not None:
            by_suffix[suffix] = Period(suffix, legacy_until)
        elif suffix.startswith("_p"):
            day = datetime.strptime(suffix[2:], "%Y%m%d").replace(tzinfo=UTC)
            by_suffix[suffix] = Period(suffix, day + timedelta(days=1))
    return sorted(by_suffix.values(), key=lambda p: p.ends_at)


async def exists(conn: Connection, name: str) -> bool:
    return bool(await conn.fetchval(_PARTITIONS_SQL["exists"], name))


async def lock(conn: Connection, names: Sequence[str]) -> None:
    """Hold these partitions exclusively until the transaction ends."""
    await conn.execute(_on(_PARTITIONS_SQL["lock_partitions"], *names))


async def has_pending(conn: Connection, deliveries_partition: str) -> bool:
    """Whether a delivery of this partition of `deliveries` is pending."""
    pending: bool = await conn.fetchval(_on(_PARTITIONS_SQL["pending_in"], deliveries_partition))
    return pending


async def has_pending_attempts(conn: Connection, attempts_partition: str) -> bool:
    """Whether a pending delivery (of any day) has an attempt in this attempts partition."""
    statement = _on(_PARTITIONS_SQL["pending_attempts_in"], attempts_partition)
    pending: bool = await conn.fetchval(statement)
    return pending


async def drop(conn: Connection, partition: str) -> int:
    """Drop a partition; returns the rows it held (estimated, counted if never analyzed)."""
    rows: int | None = await conn.fetchval(_PARTITIONS_SQL["estimated_rows"], partition)
    if rows is None:  # never analyzed: small enough to count
        rows = await conn.fetchval(_on(_PARTITIONS_SQL["count_rows"], partition))
    await conn.execute(_on(_PARTITIONS_SQL["drop"], partition))
    return rows


async def oldest_rows(conn: Connection) -> dict[str, datetime | None]:
    """When the oldest row of each retained table (idempotency_keys too) was written."""
    return {table: await conn.fetchval(sql) for table, sql in _OLDEST.items()}


def _on(statement: str, *partitions: str) -> str:
    """`statement` naming `partitions` (`{partition}` is the first of them)."""
    quoted = [quote_identifier(name) for name in partitions]
    return statement.format(partition=quoted[0], partitions=", ".join(quoted))
