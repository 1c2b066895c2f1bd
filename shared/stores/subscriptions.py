"""subscriptions: the API's create, list, read, change, rotate, delete; the sender's streaks.

A write given a `tenant_scope` (a portal token's tenant) changes the subscription only if it
is of that tenant when written: the check is part of the statement, so no move of the
subscription between a check and the write can let one tenant change another's. None is an
operator's scope: any tenant.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from shared.sql import queries
from shared.stores import Connection, connection, transaction

_DELIVERIES_SQL = queries("deliveries")
_SUBSCRIPTIONS_SQL = queries("subscriptions")

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
            _SUBSCRIPTIONS_SQL["insert"],
            subscription_id,
            url,
            event_types,
            description,
            tenant_id,
            sealed_secret,
        )
    assert row is not None
    return row


async def get(pool: asyncpg.Pool, subscription_id: str) -> asyncpg.Record | None:
    """A subscription that is not deleted, or None."""
    async with connection(pool) as conn:
        row: asyncpg.Record | None = await conn.fetchrow(_SUBSCRIPTIONS_SQL["get"], subscription_id)
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
            return list(await conn.fetch(_SUBSCRIPTIONS_SQL["list"], *args))
        return list(await conn.fetch(_SUBSCRIPTIONS_SQL["list_of_tenant"], *args, tenant_id))


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
    async with connection(pool) as conn:
        row: asyncpg.Record | None = await conn.fetchrow(
            _SUBSCRIPTIONS_SQL["update"],
            subscription_id,
            tenant_scope,
            sorted(changes),
            changes.get("url"),
            changes.get("event_types"),
            changes.get("description"),
            changes.get("tenant_id"),
            status,
        )
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
            _SUBSCRIPTIONS_SQL["rotate_secret"], subscription_id, sealed_secret, tenant_scope
        )
        return row


async def delete(
    pool: asyncpg.Pool, subscription_id: str, *, tenant_scope: str | None = None
) -> int | None:
    """Soft-delete and cancel its pending deliveries; how many were cancelled, None if absent."""
    async with transaction(pool) as conn:
        deleted = await conn.execute(_SUBSCRIPTIONS_SQL["delete"], subscription_id, tenant_scope)
        if deleted == "UPDATE 0":
            return None
        cancelled = await conn.execute(
            _DELIVERIES_SQL["cancel_pending_of_subscription"], subscription_id
        )
    return int(cancelled.split()[-1])


async def clear_failing(conn: Connection, subscription_ids: list[str]) -> None:
    """End the failing streak of these subscriptions (a success came)."""
    await conn.execute(_SUBSCRIPTIONS_SQL["clear_failing"], subscription_ids)


async def set_failing(conn: Connection, started: list[tuple[str, datetime, bool]]) -> None:
    """Start a failing streak: (id, since, whether a success in the batch came before)."""
    await conn.execute(
        _SUBSCRIPTIONS_SQL["set_failing"],
        [s[0] for s in started],
        [s[1] for s in started],
        [s[2] for s in started],
    )
