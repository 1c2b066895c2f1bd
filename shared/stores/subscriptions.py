"""Subscriptions as the API manages them: create, list, read, change, rotate, delete.

A write given a `tenant_scope` (a portal token's tenant) changes the subscription only if it
is of that tenant when written: the check is part of the statement, so no move of the
subscription between a check and the write can let one tenant change another's. None is an
operator's scope: any tenant.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from shared.sql import queries
from shared.stores import connection, transaction

_DELIVERIES_SQL = queries("deliveries")

COLUMNS = (
    "id, url, event_types, status, disabled_reason, description, tenant_id, secret,"
    " previous_secret_expires_at, created_at, updated_at"
)
_LIVE = "deleted_at IS NULL"
_IN_SCOPE = "(${n}::text IS NULL OR tenant_id = ${n})"

_INSERT = f"""
INSERT INTO subscriptions (id, url, event_types, description, tenant_id, secret)
VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}
"""
_GET = f"SELECT {COLUMNS} FROM subscriptions WHERE id = $1 AND {_LIVE}"
# Two statements, not one with `($4 IS NULL OR tenant_id = $4)`: the generic plan of that
# one could not use an index on the tenant, and a tenant's page would scan every id (issue
# 17). `id > $1` (never NULL: '' sorts first) keeps the cursor an index bound, not a filter.
_LIST_FILTERS = """
  AND id > $1
  AND ($2::text[] IS NULL OR event_types && $2)
  AND ($3::text IS NULL OR status = $3)
"""
_LIST = f"""
SELECT {COLUMNS} FROM subscriptions
WHERE {_LIVE} {_LIST_FILTERS}
ORDER BY id LIMIT $4
"""
_LIST_OF_TENANT = f"""
SELECT {COLUMNS} FROM subscriptions
WHERE {_LIVE} AND tenant_id = $5 {_LIST_FILTERS}
ORDER BY id LIMIT $4
"""
_ROTATE = f"""
UPDATE subscriptions
SET previous_secret = secret, previous_secret_expires_at = now() + interval '24 hours',
    secret = $2, updated_at = now()
WHERE id = $1 AND {_LIVE} AND {_IN_SCOPE.format(n=3)} RETURNING {COLUMNS}
"""
_DELETE = (
    "UPDATE subscriptions SET deleted_at = now(), updated_at = now()"
    f" WHERE id = $1 AND {_LIVE} AND {_IN_SCOPE.format(n=2)}"
)

_SETTABLE = frozenset({"url", "event_types", "description", "tenant_id"})


async def create(
    pool: asyncpg.Pool,
    subscription_id: str,
    *,
    url: str,
    event_types: list[str],
    description: str,
    tenant_id: str | None,
    sealed_secret: str,
) -> asyncpg.Record:
    async with connection(pool) as conn:
        row = await conn.fetchrow(
            _INSERT, subscription_id, url, event_types, description, tenant_id, sealed_secret
        )
    assert row is not None
    return row


async def get(pool: asyncpg.Pool, subscription_id: str) -> asyncpg.Record | None:
    """A subscription that is not deleted, or None."""
    async with connection(pool) as conn:
        row: asyncpg.Record | None = await conn.fetchrow(_GET, subscription_id)
        return row


async def list_page(
    pool: asyncpg.Pool,
    *,
    after_id: str | None,
    patterns: list[str] | None,
    status: str | None,
    tenant_id: str | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Up to `limit` subscriptions after `after_id`, oldest first, with any of `patterns`."""
    args = (after_id or "", patterns, status, limit)
    async with connection(pool) as conn:
        if tenant_id is None:
            return list(await conn.fetch(_LIST, *args))
        return list(await conn.fetch(_LIST_OF_TENANT, *args, tenant_id))


async def update(
    pool: asyncpg.Pool,
    subscription_id: str,
    changes: dict[str, Any],
    status: str | None,
    *,
    tenant_scope: str | None = None,
) -> asyncpg.Record | None:
    """Apply `changes` (columns of `_SETTABLE`) and a status change; None when not found
    (or not of `tenant_scope`).

    Enabling clears `disabled_reason` and `failing_since`; disabling an enabled one records
    `manual`.
    """
    assert set(changes) <= _SETTABLE
    sets = ["updated_at = now()"]
    values: list[Any] = [subscription_id, tenant_scope]
    for column, value in sorted(changes.items()):
        values.append(value)
        sets.append(f"{column} = ${len(values)}")
    if status == "enabled":
        sets.append("status = 'enabled', disabled_reason = NULL, failing_since = NULL")
    elif status == "disabled":
        # Disabling an already disabled one keeps its reason (`gone` says more than `manual`).
        sets.append(
            "status = 'disabled', disabled_reason ="
            " CASE WHEN status = 'enabled' THEN 'manual' ELSE disabled_reason END"
        )
    sql = (
        f"UPDATE subscriptions SET {', '.join(sets)}"
        f" WHERE id = $1 AND {_LIVE} AND {_IN_SCOPE.format(n=2)} RETURNING {COLUMNS}"
    )
    async with connection(pool) as conn:
        row: asyncpg.Record | None = await conn.fetchrow(sql, *values)
        return row


async def rotate(
    pool: asyncpg.Pool,
    subscription_id: str,
    sealed_secret: str,
    *,
    tenant_scope: str | None = None,
) -> asyncpg.Record | None:
    """Make `sealed_secret` current; the old one signs beside it for 24 hours."""
    async with connection(pool) as conn:
        row: asyncpg.Record | None = await conn.fetchrow(
            _ROTATE, subscription_id, sealed_secret, tenant_scope
        )
        return row


async def delete(
    pool: asyncpg.Pool, subscription_id: str, *, tenant_scope: str | None = None
) -> int | None:
    """Soft-delete and cancel its pending deliveries; how many were cancelled, None if absent."""
    async with transaction(pool) as conn:
        deleted = await conn.execute(_DELETE, subscription_id, tenant_scope)
        if deleted == "UPDATE 0":
            return None
        cancelled = await conn.execute(
            _DELIVERIES_SQL["cancel_pending_of_subscription"], subscription_id
        )
    return int(cancelled.split()[-1])
