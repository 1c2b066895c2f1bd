"""The idempotency keys past their window, and the table's size: what retention asks of them.

A key is written with its event, by the one statement that stores both (`insert_many` of
`shared/sql/events.sql`, run by `shared/stores/events.py`), which also decides whether a key
is still inside its window; this module reads and purges the table as a whole
(`shared/sql/idempotency_keys.sql`). Its functions take the caller's connection.
"""

from __future__ import annotations

from shared.sql import queries
from shared.stores import Connection

_IDEMPOTENCY_KEYS_SQL = queries("idempotency_keys").require("purge_expired", "size")


async def purge_expired(conn: Connection, window_s: float, limit: int) -> int:
    """Delete at most `limit` keys accepted more than `window_s` ago, oldest first; how many."""
    status = await conn.execute(_IDEMPOTENCY_KEYS_SQL["purge_expired"], window_s, limit)
    return int(status.split()[-1])


async def size(conn: Connection) -> tuple[float, int]:
    """(rows, as the planner estimates them; bytes, indexes included) of the table."""
    row = await conn.fetchrow(_IDEMPOTENCY_KEYS_SQL["size"])
    assert row is not None
    return row["rows"], row["bytes"]
