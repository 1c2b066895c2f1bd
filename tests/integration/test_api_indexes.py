"""The API's reads and fanout's routes use indexes, whatever the size of the tables (issue 17).

Each statement is planned as asyncpg runs it after a few calls: a generic plan of the prepared
statement (`plan_cache_mode = force_generic_plan`), on tables with enough rows (50,000
subscriptions, 100,000 deliveries, ANALYZEd) that a scan of a whole table or of every id
would be chosen if no index fitted. Each test names the index condition it expects, so a
plan that merely walks another index in order (and filters) fails too.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import orjson
import pytest

from shared.sql import queries
from shared.stores import subscriptions as routing
from tests.support import (
    create_database_from_template,
    database_url,
    drop_database,
    unique_name,
)

SUBSCRIPTIONS_SQL = queries("subscriptions")
DELIVERIES_SQL = queries("deliveries")
ATTEMPTS_SQL = queries("delivery_attempts")

SUBSCRIPTIONS = 50_000
TENANTS = 1_000
DELIVERIES = 100_000

_FILL = f"""
SET session_replication_role = replica;  -- a bulk fill: no NOTIFY per row, no FK checks
INSERT INTO subscriptions (id, url, event_types, tenant_id, secret)
SELECT 'sub_' || lpad(n::text, 8, '0'), 'http://127.0.0.1:9/' || n,
       CASE WHEN n % 3 = 0 THEN ARRAY['invoice.*'] ELSE ARRAY['order.paid', 'order.void'] END,
       CASE WHEN n % 50 = 0 THEN NULL ELSE 'tenant-' || (n % {TENANTS}) END,
       'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'
FROM generate_series(1, {SUBSCRIPTIONS}) AS n;
INSERT INTO events (id, type, data, source, created_at)
SELECT 'evt_' || lpad(n::text, 8, '0'), 'invoice.paid', '{{}}', 'http',
       now() - n * interval '1 second'
FROM generate_series(1, {DELIVERIES // 10}) AS n;
INSERT INTO deliveries (id, event_id, subscription_id, status, created_at)
SELECT 'dlv_' || lpad(n::text, 8, '0'), 'evt_' || lpad((n % {DELIVERIES // 10} + 1)::text, 8, '0'),
       'sub_' || lpad((n % {SUBSCRIPTIONS} + 1)::text, 8, '0'),
       CASE WHEN n % 7 = 0 THEN 'failed' ELSE 'succeeded' END, now() - n * interval '1 second'
FROM generate_series(1, {DELIVERIES}) AS n;
INSERT INTO delivery_attempts (delivery_id, attempt, attempted_at, duration_ms, outcome)
SELECT 'dlv_' || lpad(n::text, 8, '0'), 1, now(), 10, 'success'
FROM generate_series(1, {DELIVERIES}) AS n;
SET session_replication_role = DEFAULT;
ANALYZE subscriptions; ANALYZE events; ANALYZE deliveries; ANALYZE delivery_attempts;
"""


@pytest.fixture(scope="module")
def filled_database(template_database: str) -> Iterator[str]:
    """One filled database for the module (filling takes a few seconds)."""
    name = unique_name("hookline_idx_")

    async def fill() -> None:
        await create_database_from_template(name, template_database)
        conn = await asyncpg.connect(database_url(name))
        try:
            await conn.execute(_FILL)
        finally:
            await conn.close()

    asyncio.run(fill())
    yield name
    asyncio.run(drop_database(name))


@pytest.fixture
async def db(filled_database: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url(filled_database))
    await conn.execute("SET plan_cache_mode = force_generic_plan")
    yield conn
    await conn.close()


async def plan_of(conn: asyncpg.Connection, sql: str, *args: Any) -> dict[str, Any]:
    """The generic plan of `sql` as a prepared statement, run with `args`."""
    await conn.execute(f"PREPARE q AS {sql}")
    literals = ", ".join(_literal(a) for a in args)
    try:
        text = await conn.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE q({literals})")
    finally:
        await conn.execute("DEALLOCATE q")
    plan: dict[str, Any] = orjson.loads(text)[0]["Plan"]
    # A partition that holds no row (today's, when the fill's ids all lie in the default
    # partition) is rightly scanned whole: such scans are marked, so only scans of tables
    # with rows must use an index.
    empty = {
        r["relname"]
        for r in await conn.fetch(
            "SELECT relname FROM pg_class WHERE relkind = 'r' AND relpages = 0"
        )
    }
    for node in nodes(plan):
        if node.get("Relation Name") in empty:
            node["Empty Relation"] = True
    return plan


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return (
            "ARRAY["
            + ", ".join(_literal(v) for v in value)
            + "]::"
            + ("int[]" if value and isinstance(value[0], int) else "text[]")
        )
    return "'" + str(value).replace("'", "''") + "'"


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


_BIG_TABLES = ("subscriptions", "deliveries", "events", "delivery_attempts")


def _relation_of(node: dict[str, Any]) -> str | None:
    """The table a scan reads, a partition counting as its parent (`deliveries_default`)."""
    name = node.get("Relation Name")
    if name is None:
        return None
    for table in _BIG_TABLES:
        if name == table or name.startswith(f"{table}_"):
            return table
    return str(name)


def scans_of(plan: dict[str, Any], table: str) -> list[dict[str, Any]]:
    """The scans of `table` or its partitions; fails on a sequential scan of a big table."""
    for node in nodes(plan):
        big = _relation_of(node) in _BIG_TABLES and not node.get("Empty Relation")
        assert node["Node Type"] != "Seq Scan" or not big, orjson.dumps(
            plan, option=orjson.OPT_INDENT_2
        ).decode()
    return [n for n in nodes(plan) if _relation_of(n) == table]


def conditions(scans: list[dict[str, Any]]) -> str:
    return " ".join(str(s.get("Index Cond", "")) + str(s.get("Recheck Cond", "")) for s in scans)


async def test_listing_subscriptions_walks_the_id_index(db: asyncpg.Connection) -> None:
    plan = await plan_of(db, SUBSCRIPTIONS_SQL["list"], "", None, None, 51)
    [scan] = scans_of(plan, "subscriptions")
    assert scan["Node Type"] in ("Index Scan", "Index Only Scan")
    assert scan["Index Name"] == "subscriptions_live"
    plan = await plan_of(db, SUBSCRIPTIONS_SQL["list"], "sub_00020000", None, None, 51)
    [scan] = scans_of(plan, "subscriptions")
    assert "id >" in conditions([scan])  # the cursor bounds the index walk, not a filter


async def test_listing_a_tenants_subscriptions_looks_the_tenant_up(db: asyncpg.Connection) -> None:
    for cursor in ("", "sub_00020000"):
        plan = await plan_of(
            db, SUBSCRIPTIONS_SQL["list_of_tenant"], cursor, None, None, 51, "tenant-7"
        )
        scans = scans_of(plan, "subscriptions")
        assert "tenant_id = " in conditions(scans), orjson.dumps(plan).decode()


async def test_a_subscriptions_deliveries_are_read_by_its_index(db: asyncpg.Connection) -> None:
    plan = await plan_of(db, SUBSCRIPTIONS_SQL["get"], "sub_00000007")
    assert "id = " in conditions(scans_of(plan, "subscriptions"))
    for status, tenant in ((None, None), ("failed", None), (None, "tenant-7")):
        plan = await plan_of(
            db,
            DELIVERIES_SQL["list_for_subscription"],
            "sub_00000007",
            status,
            None,
            None,
            51,
            tenant,
        )
        assert "subscription_id = " in conditions(scans_of(plan, "deliveries"))
        assert "id = " in conditions(scans_of(plan, "events"))


async def test_one_delivery_and_its_attempts_are_read_by_id(db: asyncpg.Connection) -> None:
    plan = await plan_of(db, DELIVERIES_SQL["get"], "dlv_00000007")
    assert "id = " in conditions(scans_of(plan, "deliveries"))
    assert "id = " in conditions(scans_of(plan, "events"))
    plan = await plan_of(db, ATTEMPTS_SQL["of_delivery"], "dlv_00000007")
    assert "delivery_id = " in conditions(scans_of(plan, "delivery_attempts"))


async def test_fanout_routes_are_read_by_tenant_and_by_pattern(db: asyncpg.Connection) -> None:
    # Two tenanted keys and one untenanted, each with its candidate patterns, as load_routes
    # sends them.
    keys = [("tenant-7", "invoice.paid"), ("tenant-8", "order.paid"), (None, "invoice.paid")]
    indexes, tenants, patterns = [], [], []
    for i, (tenant, event_type) in enumerate(keys):
        for pattern in routing.candidate_keys(event_type):
            indexes.append(i)
            tenants.append(tenant)
            patterns.append(pattern)
    plan = await plan_of(db, SUBSCRIPTIONS_SQL["routes"], indexes, tenants, patterns)
    scans = scans_of(plan, "subscriptions")
    assert "tenant_id = " in conditions(scans), orjson.dumps(plan).decode()
    assert "event_types &&" in conditions(scans), orjson.dumps(plan).decode()
    # And they are the right rows.
    found = await routing.load_routes(db, keys)
    for (tenant, _), pattern in zip(keys, ("invoice.*", "order.paid", "invoice.*"), strict=True):
        expected = await db.fetchval(
            "SELECT count(*) FROM subscriptions WHERE tenant_id IS NOT DISTINCT FROM $1"
            " AND $2 = ANY(event_types)",
            tenant,
            pattern,
        )
        assert expected > 0
        assert len(found[(tenant, _)]) == expected
