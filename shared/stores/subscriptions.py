"""subscriptions: every statement on the table (shared/sql/subscriptions.sql) runs here.

The API's create, list, read, change, rotate, delete; the sender's streaks, parks and
disables; what fanout and the sender load to route and sign (`shared.subscriptions` holds
that model); the secrets `hookline secrets reencrypt` re-seals.

A write given a `tenant_scope` (a portal token's tenant) changes the subscription only if it
is of that tenant when written: the check is part of the statement, so no move of the
subscription between a check and the write can let one tenant change another's. None is an
operator's scope: any tenant.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from shared.errors import ConfigurationError
from shared.matching import candidate_keys
from shared.secretbox import ENCRYPTED_PREFIX, SecretBox
from shared.sql import queries
from shared.stores import Connection, connection
from shared.subscriptions import Route, RouteKey, SubscriptionTarget, from_row

_SUBSCRIPTIONS_SQL = queries("subscriptions").require(
    "insert",
    "get",
    "list",
    "list_of_tenant",
    "update",
    "rotate_secret",
    "delete",
    "lock_in_scope",
    "tenants",
    "clear_failing",
    "set_failing",
    "disable",
    "failing_too_long",
    "park",
    "unpark",
    "targets_all",
    "target",
    "targets",
    "one_encrypted_secret",
    "routes",
    "tenants_of",
    "secrets_for_update",
    "set_secrets",
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


async def delete(conn: Connection, subscription_id: str, tenant_scope: str | None) -> bool:
    """Soft-delete a live subscription (of `tenant_scope`, any when None); False if absent.

    Its pending deliveries are the caller's to cancel, in the same transaction
    (`shared.stores.deliveries.cancel_pending_of_subscription`).
    """
    deleted = await conn.execute(_SUBSCRIPTIONS_SQL["delete"], subscription_id, tenant_scope)
    return deleted != "UPDATE 0"


async def lock_in_scope(
    conn: Connection, subscription_id: str, tenant_scope: str | None
) -> asyncpg.Record | None:
    """The subscription (its `tenant_id`) if live and of `tenant_scope` (any when None),
    held so until the transaction of `conn` ends; else None."""
    row: asyncpg.Record | None = await conn.fetchrow(
        _SUBSCRIPTIONS_SQL["lock_in_scope"], subscription_id, tenant_scope
    )
    return row


async def tenants_by_id(pool: asyncpg.Pool, subscription_ids: list[str]) -> dict[str, str | None]:
    """The tenant of each of these subscriptions (deleted ones too), by id."""
    async with connection(pool) as conn:
        rows = await conn.fetch(_SUBSCRIPTIONS_SQL["tenants"], subscription_ids)
    return {r["id"]: r["tenant_id"] for r in rows}


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


async def disable(conn: Connection, subscription_ids: list[str], reason: str) -> list[str]:
    """Disable the enabled, live ones of `subscription_ids` for `reason`; the ids disabled."""
    rows = await conn.fetch(_SUBSCRIPTIONS_SQL["disable"], subscription_ids, reason)
    return [r["id"] for r in rows]


async def failing_too_long(conn: Connection, window: timedelta) -> list[str]:
    """The enabled subscriptions whose failing streak condemns them (`services.sender.disable`
    says the rule)."""
    rows = await conn.fetch(_SUBSCRIPTIONS_SQL["failing_too_long"], window)
    return [r["id"] for r in rows]


async def park(pool: asyncpg.Pool, subscription_id: str, park_s: float) -> None:
    """Park a subscription for `park_s` from now (`services.sender.park`)."""
    await pool.execute(_SUBSCRIPTIONS_SQL["park"], subscription_id, park_s)


async def unpark(pool: asyncpg.Pool, subscription_id: str) -> None:
    """Clear the park of a subscription, if it has one."""
    await pool.execute(_SUBSCRIPTIONS_SQL["unpark"], subscription_id)


async def load_all(conn: Connection, box: SecretBox) -> list[SubscriptionTarget]:
    """Every subscription that is not deleted."""
    rows = await conn.fetch(_SUBSCRIPTIONS_SQL["targets_all"])
    return [from_row(r, box) for r in rows]


async def load_one(
    conn: Connection, subscription_id: str, box: SecretBox
) -> SubscriptionTarget | None:
    """One subscription; None when it does not exist or was deleted."""
    row = await conn.fetchrow(_SUBSCRIPTIONS_SQL["target"], subscription_id)
    return from_row(row, box) if row else None


async def load_many(
    conn: Connection, subscription_ids: Sequence[str], box: SecretBox
) -> dict[str, SubscriptionTarget | Exception]:
    """The subscriptions of `subscription_ids` that exist and are not deleted, by id.

    A row whose secret does not open is there as its error (ConfigurationError or
    ValueError), so one unreadable row fails only what needs that subscription.
    """
    rows = await conn.fetch(_SUBSCRIPTIONS_SQL["targets"], list(subscription_ids))
    found: dict[str, SubscriptionTarget | Exception] = {}
    for row in rows:
        try:
            found[row["id"]] = from_row(row, box)
        except (ConfigurationError, ValueError) as exc:
            found[row["id"]] = exc
    return found


async def check_secret_key(conn: Connection, box: SecretBox) -> None:
    """Open one stored encrypted secret: raises ConfigurationError when the key cannot."""
    sealed = await conn.fetchval(_SUBSCRIPTIONS_SQL["one_encrypted_secret"], ENCRYPTED_PREFIX + "%")
    if sealed is not None:
        box.open(sealed)


async def load_routes(
    conn: Connection, keys: Sequence[RouteKey]
) -> dict[RouteKey, tuple[Route, ...]]:
    """The routes of each key, every key answered (an empty tuple when nothing matches).

    Answered by the indexes of migrations 0001 and 0020 whatever the size of the table.
    """
    indexes: list[int] = []
    tenants: list[str | None] = []
    patterns: list[str] = []
    for i, (tenant, event_type) in enumerate(keys):
        for pattern in candidate_keys(event_type):
            indexes.append(i)
            tenants.append(tenant)
            patterns.append(pattern)
    found: list[list[Route]] = [[] for _ in keys]
    for row in await conn.fetch(_SUBSCRIPTIONS_SQL["routes"], indexes, tenants, patterns):
        found[row["i"]].append(Route(sys.intern(row["id"]), row["parked_until"]))
    return {key: tuple(routes) for key, routes in zip(keys, found, strict=True)}


async def tenants_of(conn: Connection, subscription_ids: list[str]) -> list[str | None]:
    """The distinct tenants of these subscriptions (deleted ones too)."""
    rows = await conn.fetch(_SUBSCRIPTIONS_SQL["tenants_of"], subscription_ids)
    return [r["tenant_id"] for r in rows]


async def secrets_for_update(conn: Connection) -> list[asyncpg.Record]:
    """Every subscription's id and sealed secrets (deleted ones too), locked until the
    transaction of `conn` ends."""
    return list(await conn.fetch(_SUBSCRIPTIONS_SQL["secrets_for_update"]))


async def set_secrets(conn: Connection, updates: list[tuple[str, str, str | None]]) -> None:
    """Store (id, sealed secret, sealed previous secret or None) for each subscription."""
    await conn.executemany(_SUBSCRIPTIONS_SQL["set_secrets"], updates)
