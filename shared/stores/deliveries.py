"""Deliveries as the API reads and re-sends them; the sender writes them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from shared.errors import Conflict, NotFound
from shared.sql import queries
from shared.stores import Connection, connection, transaction
from shared.stores.tenancy import DELIVERY_IN_SCOPE

_DELIVERIES_SQL = queries("deliveries")
_DELIVERY_ATTEMPTS_SQL = queries("delivery_attempts")
_SUBSCRIPTIONS_SQL = queries("subscriptions")

COLUMNS = (
    "d.id, d.event_id, d.subscription_id, e.type AS event_type, d.status, d.attempts,"
    " d.last_status_code, d.last_error, d.last_attempt_at, d.next_attempt_at,"
    " d.created_at, d.updated_at"
)
_FROM = "FROM deliveries d JOIN events e ON e.id = d.event_id"

# A delivery id does not name its partition (deliveries are partitioned by event id), so
# each partition's index is probed once; the event is then looked up by its id, pruned to
# its one partition at run time. OFFSET 0 keeps the planner from turning that into a hash
# join over every event.
_BY_ID_FROM = (
    "FROM deliveries d JOIN LATERAL (SELECT e.id, e.type, e.data, e.created_at, e.tenant_id"
    " FROM events e"
    " WHERE e.id = d.event_id OFFSET 0) e ON true"
)
_GET = f"SELECT {COLUMNS} {_BY_ID_FROM} WHERE d.id = $1"
_LIST = f"""
SELECT {COLUMNS} {_FROM}
WHERE d.subscription_id = $1
  AND ($2::text IS NULL OR d.status = $2)
  AND ($3::timestamptz IS NULL OR (d.created_at, d.id) < ($3, $4))
  AND ($6::text IS NULL OR e.tenant_id = $6)
ORDER BY d.created_at DESC, d.id DESC LIMIT $5
"""
_FOR_RETRY = f"""
SELECT d.id, d.status, d.subscription_id, s.deleted_at,
       e.id AS event_id, e.type, e.data, e.created_at
{_BY_ID_FROM}
JOIN subscriptions s ON s.id = d.subscription_id
WHERE d.id = $1 AND {DELIVERY_IN_SCOPE.format(n=2)}
FOR UPDATE OF d FOR SHARE OF s
"""


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
        row = await conn.fetchrow(_GET, delivery_id)
        if row is None:
            return None
        attempts = await conn.fetch(_DELIVERY_ATTEMPTS_SQL["of_delivery"], delivery_id)
    return row, list(attempts)


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
            await conn.fetch(_LIST, subscription_id, status, created, last_id, limit, tenant_scope)
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
        row = await conn.fetchrow(_FOR_RETRY, delivery_id, tenant_scope)
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
