"""What the backlog sampler reads from Postgres: pending work, and its own lead.

Both run on the sampler's connection of its own (`shared/sampler.py`), never on the pool: the
lead is a session advisory lock, held for as long as that connection lives
(`shared/sql/ops.sql`).
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.sql import queries
from shared.stores import Connection

_OPS_SQL = queries("ops").require("database_sample", "try_sampler_lock")


@dataclass(frozen=True)
class DatabaseSample:
    oldest_pending_age_s: float
    """Age of the oldest delivery not yet attempted (0 when none waits)."""
    subscriptions_failing: int
    subscriptions_parked: int


async def database_sample(conn: Connection) -> DatabaseSample:
    """One query, served by partial indexes (migration 0040): cheap at any table size.

    The oldest pending delivery is read as the first entry of its index (ORDER BY ... LIMIT
    1), not as min() over every pending row, which a large backlog would make slow.
    """
    row = await conn.fetchrow(_OPS_SQL["database_sample"])
    assert row is not None
    return DatabaseSample(max(0.0, row["oldest_pending_s"]), row["failing"], row["parked"])


async def try_sampler_lock(conn: Connection, key: int) -> bool:
    """Take the sampler's lead for this session, unless another session holds it."""
    return bool(await conn.fetchval(_OPS_SQL["try_sampler_lock"], key))
