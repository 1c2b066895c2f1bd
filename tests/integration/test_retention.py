"""Retention by partitions: expired days dropped whole, pending deliveries kept (issue 16)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import asyncpg
import pytest

from services.ingest.retention import DAYS_AHEAD, Retention
from shared.db import create_pool
from shared.ids import delivery_id, id_at
from shared.metrics import REGISTRY
from shared.settings import Settings

RETENTION_S = 30 * 86400.0
WINDOW_S = 86400.0


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(settings.database_url.get_secret_value(), size=2)
    try:
        await pool.execute(
            "INSERT INTO subscriptions (id, url, event_types, secret)"
            " VALUES ('sub_r', 'https://example.com/h', '{*}', 'whsec_x')"
        )
        yield pool
    finally:
        await pool.close()


def _noon(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 12, tzinfo=UTC)


async def _event(
    pool: asyncpg.Pool, at: datetime, status: str, attempts: list[datetime] | None = None
) -> tuple[str, str]:
    """An event of `at` with one delivery in `status` and its attempts; (event, delivery)."""
    event_id = id_at("evt", at.timestamp())
    dlv = delivery_id(event_id, "sub_r")
    await pool.execute(
        "INSERT INTO events (id, type, data, source, created_at)"
        " VALUES ($1, 'a.b', '{}', 'amqp', $2)",
        event_id,
        at,
    )
    await pool.execute(
        "INSERT INTO deliveries (id, event_id, subscription_id, status, attempts, next_attempt_at,"
        " created_at) VALUES ($1, $2, 'sub_r', $3, $4, $5, $6)",
        dlv,
        event_id,
        status,
        len(attempts or []),
        at + timedelta(hours=1) if status == "pending" and attempts else None,
        at,
    )
    for n, attempted in enumerate(attempts or [], start=1):
        await pool.execute(
            "INSERT INTO delivery_attempts (delivery_id, attempt, attempted_at, status_code,"
            " duration_ms, outcome) VALUES ($1, $2, $3, 500, 5, 'retry')",
            dlv,
            n,
            attempted,
        )
    return event_id, dlv


async def _exists(pool: asyncpg.Pool, table: str, column: str, value: str) -> bool:
    found: bool = await pool.fetchval(
        f"SELECT EXISTS (SELECT 1 FROM {table} WHERE {column} = $1)", value
    )
    return found


def _sample(name: str, table: str) -> float:
    return REGISTRY.get_sample_value(name, {"table": table}) or 0.0


async def test_expired_days_are_dropped_and_pending_deliveries_kept(pool: asyncpg.Pool) -> None:
    today = datetime.now(UTC).date()
    old, older = today - timedelta(days=39), today - timedelta(days=40)
    await pool.execute("SELECT hookline_ensure_partitions($1, $2)", older, old)
    # The older day: settled deliveries only (a success, a dead-lettered failure).
    gone = [
        await _event(pool, _noon(older), "succeeded", [_noon(older)]),
        await _event(pool, _noon(older), "failed", [_noon(older)] * 3),
    ]
    # The old day: one never tried yet, one retrying (attempts made), one settled.
    waiting = await _event(pool, _noon(old), "pending")
    retrying = await _event(pool, _noon(old), "pending", [_noon(older), _noon(old)])
    settled = await _event(pool, _noon(old), "succeeded", [_noon(old)])
    recent = await _event(pool, datetime.now(UTC), "succeeded", [datetime.now(UTC)])
    await pool.execute(
        "INSERT INTO idempotency_keys (scope, key, event_id, accepted_at) VALUES"
        " ('', 'stale', $1, now() - interval '25 hours'), ('acme', 'fresh', $2, now())",
        recent[0],
        recent[0],
    )
    dropped_before = _sample("hookline_retention_dropped_partitions_total", "events")

    result = await Retention(pool, retention_s=RETENTION_S, window_s=WINDOW_S).pass_once()

    day = older.strftime("%Y%m%d")
    assert set(result.dropped) == {f"events_p{day}", f"deliveries_p{day}"}
    for event_id, dlv in gone:
        assert not await _exists(pool, "events", "id", event_id)
        assert not await _exists(pool, "deliveries", "id", dlv)
    # Attempts of the older day stay while a pending delivery has one among them.
    assert await _exists(pool, "delivery_attempts", "delivery_id", retrying[1])
    for event_id, dlv in (waiting, retrying, settled, recent):
        assert await _exists(pool, "events", "id", event_id)
        assert await _exists(pool, "deliveries", "id", dlv)
    assert result.kept_pending == [f"_p{old.strftime('%Y%m%d')}"]
    assert result.keys_purged == 1
    assert not await _exists(pool, "idempotency_keys", "key", "stale")
    assert await _exists(pool, "idempotency_keys", "key", "fresh")
    assert _sample("hookline_retention_dropped_partitions_total", "events") == dropped_before + 1
    assert _sample("hookline_table_size_bytes", "events") > 0
    assert _sample("hookline_table_partitions", "events") >= DAYS_AHEAD + 2
    assert _sample("hookline_table_oldest_row_timestamp_seconds", "events") == pytest.approx(
        _noon(old).timestamp(), abs=1
    )

    # Once they settle (the retrying one dead-lettered), the rest of the old days follow.
    await pool.execute(
        "UPDATE deliveries SET status = 'failed', next_attempt_at = NULL WHERE id = $1",
        retrying[1],
    )
    await pool.execute("UPDATE deliveries SET status = 'succeeded' WHERE id = $1", waiting[1])
    again = await Retention(pool, retention_s=RETENTION_S, window_s=WINDOW_S).pass_once()
    assert len(again.dropped) == 4 and again.kept_pending == []
    for event_id, dlv in (waiting, retrying, settled):
        assert not await _exists(pool, "events", "id", event_id)
        assert not await _exists(pool, "delivery_attempts", "delivery_id", dlv)
    assert await _exists(pool, "events", "id", recent[0])


async def test_partitions_are_made_ahead_and_lookups_by_id_are_pruned(pool: asyncpg.Pool) -> None:
    await pool.execute(
        "DROP TABLE events_p{0}, deliveries_p{0}".format(
            (datetime.now(UTC).date() + timedelta(days=DAYS_AHEAD)).strftime("%Y%m%d")
        )
    )
    result = await Retention(pool, retention_s=RETENTION_S, window_s=WINDOW_S).pass_once()
    assert result.created == 2
    event_id, _ = await _event(pool, datetime.now(UTC), "succeeded")
    today = datetime.now(UTC).strftime("%Y%m%d")
    rows = [r[0] for r in await pool.fetch(f"EXPLAIN SELECT * FROM events WHERE id = '{event_id}'")]
    assert f"events_p{today}" in rows[0] and len(rows) == 2, rows
    # The bounds in SQL are the ids Python makes at that time.
    at = datetime(2026, 12, 3, 7, 30, 1, 234000, tzinfo=UTC)
    bound = await pool.fetchval("SELECT hookline_id_at('evt', $1)", at)
    assert bound == id_at("evt", at.timestamp(), random_part=False)
