"""Deliveries as the API reads and re-sends them; the sender writes them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from shared.errors import Conflict, NotFound
from shared.sql import queries
from shared.stores import Connection, connection, delivery_attempts, transaction

_DELIVERIES_SQL = queries("deliveries")
_SUBSCRIPTIONS_SQL = queries("subscriptions")


@dataclass(frozen=True, slots=True)
class Resend:
    """What re-sending one delivery needs: ids and the event to rebuild the body from."""

    delivery_id: str
    subscription_id: str
    event_id: str
    event_type: str
    data: dict[str, Any]
    created_at: datetime
    previous_status: str

    @classmethod
    def from_row(cls, row: asyncpg.Record, previous_status: str) -> Resend:
        return cls(
            delivery_id=row["id"],
            subscription_id=row["subscription_id"],
            event_id=row["event_id"],
            event_type=row["type"],
            data=row["data"],
            created_at=row["created_at"],
            previous_status=previous_status,
        )


async def get(pool: asyncpg.Pool, delivery_id: str) -> tuple[asyncpg.Record, list[Any]] | None:
    """A delivery and its attempts, oldest first; None when it does not exist."""
    async with connection(pool) as conn:
        row = await conn.fetchrow(_DELIVERIES_SQL["get"], delivery_id)
        if row is None:
            return None
        attempts = await delivery_attempts.of_delivery(conn, delivery_id)
    return row, attempts


async def list_page(
    pool: asyncpg.Pool,
    subscription_id: str,
    *,
    status: str | None,
    before: tuple[datetime, str] | None,
    limit: int,
    tenant_scope: str | None = None,
) -> list[asyncpg.Record]:
    """A subscription's deliveries, newest first, older than `before` (created_at, id); with
    a `tenant_scope`, only those of that tenant's events (see `store.tenancy`)."""
    created, last_id = before if before else (None, None)
    async with connection(pool) as conn:
        return list(
            await conn.fetch(
                _DELIVERIES_SQL["list_for_subscription"],
                subscription_id,
                status,
                created,
                last_id,
                limit,
                tenant_scope,
            )
        )


async def mark_for_retry(
    pool: asyncpg.Pool, delivery_id: str, *, tenant_scope: str | None = None
) -> Resend:
    """Set a delivery back to pending for a manual retry.

    Raises NotFound (also when its subscription is not of `tenant_scope`, a portal token's
    tenant, checked under the row locks the write holds), or Conflict when its subscription
    was deleted.
    """
    async with transaction(pool) as conn:
        row = await conn.fetchrow(_DELIVERIES_SQL["lock_for_retry"], delivery_id, tenant_scope)
        if row is None:
            raise NotFound(f"no delivery {delivery_id}")
        if row["deleted_at"] is not None:
            raise Conflict(f"the subscription of delivery {delivery_id} was deleted")
        await conn.execute(_DELIVERIES_SQL["set_status"], [delivery_id], "pending")
    return Resend.from_row(row, row["status"])


async def lock_subscription(
    conn: Connection, subscription_id: str, tenant_scope: str | None
) -> asyncpg.Record | None:
    """The subscription (its `tenant_id`) if live and of `tenant_scope` (any when None),
    held so until the transaction of `conn` ends; else None."""
    row: asyncpg.Record | None = await conn.fetchrow(
        _SUBSCRIPTIONS_SQL["lock_in_scope"], subscription_id, tenant_scope
    )
    return row


async def mark_recovered(
    pool: asyncpg.Pool, subscription_id: str, since: datetime, *, tenant_scope: str | None = None
) -> list[Resend] | None:
    """Set every failed delivery of a subscription created since `since` back to pending;
    None when the subscription is not live or not of `tenant_scope`."""
    async with transaction(pool) as conn:
        if await lock_subscription(conn, subscription_id, tenant_scope) is None:
            return None
        # The subscription's tenant is held by the lock; its event's is checked per row.
        rows = await conn.fetch(
            _DELIVERIES_SQL["recover_failed"], subscription_id, since, tenant_scope
        )
    return [Resend.from_row(r, "failed") for r in rows]


async def restore(pool: asyncpg.Pool, resends: list[Resend]) -> None:
    """Undo `mark_*` for deliveries whose message could not be published (those a sender
    settled meanwhile stay as the sender left them)."""
    async with transaction(pool) as conn:
        await conn.execute(
            _DELIVERIES_SQL["restore_status"],
            [r.delivery_id for r in resends],
            [r.previous_status for r in resends],
        )


async def mark_handed_on(pool: asyncpg.Pool, resends: list[Resend]) -> None:
    """Record that a confirmed copy of each of these deliveries is on its way (see
    `_DELIVERIES_SQL["handed_on"]`)."""
    async with transaction(pool) as conn:
        await conn.execute(_DELIVERIES_SQL["handed_on"], [r.delivery_id for r in resends])


def next_status(old: str, new: str, *, attempted: bool = True) -> str:
    """The status after `new` is applied to `old`: the fragment `keep_status` of
    shared/sql/deliveries.sql, for changes merged before they are written. `attempted`
    says whether the change made an attempt."""
    if old == "succeeded" or (new in ("failed", "cancelled") and old != "pending"):
        return old
    if new == "pending" and not attempted and old != "pending":
        return old
    return new


async def apply_changes(
    conn: Connection,
    delivery_ids: list[str],
    statuses: list[str],
    attempts: list[int],
    last_status_codes: list[int | None],
    last_errors: list[str | None],
    last_attempt_ats: list[datetime | None],
    next_attempt_ats: list[datetime | None],
    event_ids: list[str | None],
) -> set[str]:
    """Apply one change per delivery (columns side by side); the ids of the rows found."""
    rows = await conn.fetch(
        _DELIVERIES_SQL["apply_changes"],
        delivery_ids,
        statuses,
        attempts,
        last_status_codes,
        last_errors,
        last_attempt_ats,
        next_attempt_ats,
        event_ids,
    )
    return {r["id"] for r in rows}


async def event_ids(conn: Connection, delivery_ids: list[str]) -> dict[str, str]:
    """The event (and so the partition) of each of these deliveries that exists."""
    rows = await conn.fetch(_DELIVERIES_SQL["event_ids"], delivery_ids)
    return {r["id"]: r["event_id"] for r in rows}


async def not_started(conn: Connection, delivery_ids: list[str]) -> set[str]:
    """Those of `delivery_ids` still pending with no attempt and not handed on."""
    return {r["id"] for r in await conn.fetch(_DELIVERIES_SQL["not_started"], delivery_ids)}
