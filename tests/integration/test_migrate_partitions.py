"""Migrations 0004-0007 on a database holding data: every row kept, and served (issue 16)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from services.ingest.retention import Retention
from shared.db import migrate
from shared.ids import delivery_id, id_at
from shared.settings import Settings
from tests.support import database_url, delete_namespace, drop_database, make_settings, unique_name
from tests.support.ingest import running_ingest

DAY_S = 86400.0
_TABLES = ("events", "deliveries", "delivery_attempts")


@pytest.fixture
async def populated() -> AsyncIterator[str]:
    """A database at migration 0003 holding three days of events, deliveries and attempts."""
    name = unique_name("hookline_populated_")
    url = database_url(name)
    await migrate(url, up_to=3)
    conn = await asyncpg.connect(url)
    try:
        await _fill(conn)
        yield name
    finally:
        await conn.close()
        await drop_database(name)


async def _fill(conn: asyncpg.Connection) -> None:
    await conn.execute(
        "INSERT INTO subscriptions (id, url, event_types, secret, tenant_id) VALUES"
        " ('sub_a', 'https://a.example/h', '{*}', 'whsec_a', 'acme'),"
        " ('sub_n', 'https://n.example/h', '{*}', 'whsec_n', NULL)"
    )
    now = time.time()
    statuses = ("succeeded", "failed", "pending", "cancelled")
    for n in range(300):
        at = now - 3 * DAY_S + n * 800
        event_id = id_at("evt", at)
        tenant, sub = ("acme", "sub_a") if n % 2 else (None, "sub_n")
        key = f"order-{n}" if n % 3 else None
        created = datetime.fromtimestamp(at, UTC)
        await conn.execute(
            "INSERT INTO events (id, type, data, tenant_id, idempotency_key, source, created_at,"
            " dispatched_at) VALUES ($1, 'order.created', $2, $3, $4, 'amqp', $5, $5)",
            event_id,
            f'{{"n": {n}}}',
            tenant,
            key,
            created,
        )
        dlv = delivery_id(event_id, sub)
        await conn.execute(
            "INSERT INTO deliveries (id, event_id, subscription_id, status, attempts, created_at)"
            " VALUES ($1, $2, $3, $4, 1, $5)",
            dlv,
            event_id,
            sub,
            statuses[n % 4],
            created,
        )
        await conn.execute(
            "INSERT INTO delivery_attempts (delivery_id, attempt, attempted_at, status_code,"
            " duration_ms, outcome) VALUES ($1, 1, $2, 500, 7, 'retry')",
            dlv,
            created,
        )


async def _snapshot(url: str) -> dict[str, set[str]]:
    """Every row of the three tables, as text."""
    conn = await asyncpg.connect(url)
    try:
        return {
            table: {r[0] for r in await conn.fetch(f"SELECT t::text FROM {table} t")}
            for table in _TABLES
        }
    finally:
        await conn.close()


async def test_the_migration_keeps_every_row_and_the_service_reads_them(populated: str) -> None:
    url = database_url(populated)
    before = await _snapshot(url)
    assert [len(rows) for rows in before.values()] == [300, 300, 300]
    applied = await migrate(url)
    assert applied[:4] == [
        "0004_partition_bounds",
        "0005_partition_keys",
        "0006_idempotency_keys",
        "0007_partitioned_tables",
    ]
    assert await _snapshot(url) == before
    conn = await asyncpg.connect(url)
    try:
        kinds = await conn.fetch(
            "SELECT relname, relkind FROM pg_class WHERE relname = ANY($1::text[])", list(_TABLES)
        )
        keys = await conn.fetchval("SELECT count(*) FROM idempotency_keys")
        first = await conn.fetchrow(
            "SELECT id, tenant_id, data FROM events WHERE idempotency_key = 'order-299'"
        )
    finally:
        await conn.close()
    assert {r["relkind"] for r in kinds} == {b"p"}
    assert keys == 200
    await _served(populated, first)


async def _served(db_name: str, first: asyncpg.Record) -> None:
    namespace = unique_name("t")
    settings = make_settings(namespace, db_name)
    try:
        async with running_ingest(settings) as api:
            copy = {
                "type": "order.created",
                "data": {"n": 299},
                "id": "order-299",
                "tenant_id": "acme",
            }
            status, again, _ = await api.call("POST", "/v1/events", copy)
            assert status == 200 and again["id"] == first["id"]
            status, other, _ = await api.call("POST", "/v1/events", {**copy, "tenant_id": "globex"})
            assert status == 202 and other["id"] != first["id"]
            status, event, _ = await api.call("GET", f"/v1/events/{first['id']}")
            assert status == 200 and len(event["deliveries"]) == 1
            [dlv] = event["deliveries"]
            status, delivery, _ = await api.call("GET", f"/v1/deliveries/{dlv['id']}")
            assert status == 200 and len(delivery["attempt_log"]) == 1
    finally:
        await delete_namespace(namespace, settings.retry_delays)


async def test_the_legacy_partitions_expire_once_nothing_in_them_is_pending(populated: str) -> None:
    url = database_url(populated)
    await migrate(url)
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    try:
        until = await pool.fetchval("SELECT legacy_until FROM partitioning_cutover")
        later = until + timedelta(days=30, hours=1)
        retention = Retention(pool, retention_s=30 * DAY_S, window_s=DAY_S)
        kept = await retention.pass_once(now=later)
        assert kept.kept_pending == ["_legacy"] and kept.dropped == []
        assert await pool.fetchval("SELECT count(*) FROM events") == 300
        await pool.execute("UPDATE deliveries SET status = 'failed' WHERE status = 'pending'")
        gone = await retention.pass_once(now=later)
        assert sorted(gone.dropped) == sorted(f"{t}_legacy" for t in _TABLES)
        assert await pool.fetchval("SELECT count(*) FROM events") == 0
    finally:
        await pool.close()
    # Ingest keeps working on the daily partitions alone.
    settings: Settings = make_settings(unique_name("t"), populated)
    try:
        async with running_ingest(settings) as api:
            status, _, _ = await api.call("POST", "/v1/events", {"type": "order.created"})
            assert status == 202
    finally:
        await delete_namespace(settings.namespace, settings.retry_delays)
