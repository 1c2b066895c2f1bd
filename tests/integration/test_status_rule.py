"""The deliveries status rule is written twice, in SQL (the fragment `keep_status`, which
the database applies) and in Python (`next_status`, which merges changes of one batch): on
real Postgres, the two agree for every old status, new status and whether an attempt was
made."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

from shared.settings import Settings
from shared.stores import deliveries
from tests.support.sender import database, insert_delivery, insert_subscription

_STATUSES = ("pending", "succeeded", "failed", "cancelled")
_CASES = list(itertools.product(_STATUSES, _STATUSES, (True, False)))


async def test_the_sql_rule_and_the_python_rule_agree_on_every_change(settings: Settings) -> None:
    async with database(settings) as conn:
        sub, _ = await insert_subscription(conn, "http://127.0.0.1:1/hook")
        rows = [(await insert_delivery(conn, sub)).delivery_id for _ in _CASES]
        for dlv, (old, _new, _attempted) in zip(rows, _CASES, strict=True):
            await conn.execute("UPDATE deliveries SET status = $2 WHERE id = $1", dlv, old)
        now = datetime.now(UTC)
        found = await deliveries.apply_changes(
            conn,
            rows,
            [new for _old, new, _attempted in _CASES],
            [1 if attempted else 0 for *_, attempted in _CASES],
            [200 if attempted else None for *_, attempted in _CASES],
            [None for _ in _CASES],
            [now if attempted else None for *_, attempted in _CASES],
            [None for _ in _CASES],
            [None for _ in _CASES],
        )
        assert found == set()  # without the event id no row matches: the partition is named
        events = await deliveries.event_ids(conn, rows)
        found = await deliveries.apply_changes(
            conn,
            rows,
            [new for _old, new, _attempted in _CASES],
            [1 if attempted else 0 for *_, attempted in _CASES],
            [200 if attempted else None for *_, attempted in _CASES],
            [None for _ in _CASES],
            [now if attempted else None for *_, attempted in _CASES],
            [None for _ in _CASES],
            [events[d] for d in rows],
        )
        assert found == set(rows)
        stored = {
            r["id"]: r["status"]
            for r in await conn.fetch(
                "SELECT id, status FROM deliveries WHERE id = ANY($1::text[])", rows
            )
        }

    disagreements = [
        (old, new, attempted, stored[dlv])
        for dlv, (old, new, attempted) in zip(rows, _CASES, strict=True)
        if stored[dlv] != deliveries.next_status(old, new, attempted=attempted)
    ]
    assert disagreements == []
    # The rule is not the identity: settled histories were kept somewhere.
    assert any(stored[d] != new for d, (_o, new, _a) in zip(rows, _CASES, strict=True))
