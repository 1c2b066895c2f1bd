"""deliveries: every statement on the table (shared/sql/deliveries.sql) runs here.

Fanout inserts them pending; the sender records each outcome, cancels those of a disabled
subscription and republishes overdue ones; the API reads, retries and recovers them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from shared.errors import DATABASE_ERRORS, Conflict, NotFound, StorageUnavailable
from shared.sql import queries
from shared.stores import (
    Connection,
    connection,
    delivery_attempts,
    subscriptions,
    transaction,
)

_DELIVERIES_SQL = queries("deliveries").require(
    "insert_pending",
    "insert_test_delivery",
    "get",
    "list_for_subscription",
    "of_event",
    "counts_by_event",
    "lock_for_retry",
    "set_status",
    "recover_failed",
    "restore_status",
    "handed_on",
    "pending_again",
    "cancel_pending_of_subscription",
    "cancel_pending_of_disabled",
    "overdue",
    "apply_changes",
    "event_ids",
    "not_started",
)

DeliveryRow = tuple[str, str, str]
"""(delivery id, event id, subscription id): a row fanout inserts."""


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


async def insert_pending(pool: asyncpg.Pool, rows: list[DeliveryRow]) -> set[str]:
    """Insert pending deliveries in one statement; rows that exist already are left alone.
    Returns the ids of the rows inserted now; an id given twice is left out (neither of its
    callers can tell whose row was inserted).

    Raises StorageUnavailable when Postgres fails, and asyncpg's IntegrityConstraintViolation
    when a row names an event or subscription that is not stored.
    """
    ids, event_ids, subscription_ids = zip(*rows, strict=True)
    try:
        inserted = await pool.fetch(
            _DELIVERIES_SQL["insert_pending"], list(ids), list(event_ids), list(subscription_ids)
        )
    except asyncpg.IntegrityConstraintViolationError:
        raise
    except DATABASE_ERRORS as exc:
        raise StorageUnavailable(f"cannot write deliveries: {exc}") from exc
    new = {row[0] for row in inserted}
    if len(set(ids)) != len(ids):
        new -= {i for i, count in Counter(ids).items() if count > 1}
    return new


def is_row_error(exc: BaseException) -> bool:
    """True for errors of `insert_pending` caused by some row of a batch rather than by the
    database."""
    return isinstance(exc, asyncpg.IntegrityConstraintViolationError)


async def insert_test(
    conn: Connection, delivery_id: str, event_id: str, subscription_id: str
) -> None:
    """Insert the one pending delivery of a test event."""
    await conn.execute(
        _DELIVERIES_SQL["insert_test_delivery"], delivery_id, event_id, subscription_id
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


async def of_event(conn: Connection, event_id: str) -> list[asyncpg.Record]:
    """The deliveries of an event (id, subscription, status, attempts), oldest first."""
    return list(await conn.fetch(_DELIVERIES_SQL["of_event"], event_id))


async def counts_by_event(
    conn: Connection, event_ids: list[str], tenant_scope: str | None
) -> dict[str, dict[str, int]]:
    """Per event id, how many of its deliveries (to subscriptions of `tenant_scope`, unless
    None) are in each status; events with none are absent."""
    counts: dict[str, dict[str, int]] = {}
    for r in await conn.fetch(_DELIVERIES_SQL["counts_by_event"], event_ids, tenant_scope):
        counts.setdefault(r["event_id"], {})[r["status"]] = r["n"]
    return counts


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


async def mark_recovered(
    pool: asyncpg.Pool, subscription_id: str, since: datetime, *, tenant_scope: str | None = None
) -> list[Resend] | None:
    """Set every failed delivery of a subscription created since `since` back to pending;
    None when the subscription is not live or not of `tenant_scope`."""
    async with transaction(pool) as conn:
        if await subscriptions.lock_in_scope(conn, subscription_id, tenant_scope) is None:
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
    `handed_on`)."""
    async with transaction(pool) as conn:
        await handed_on(conn, [r.delivery_id for r in resends])


async def handed_on(conn: Connection, delivery_ids: list[str]) -> None:
    """Those of `delivery_ids` still pending are due again from now: a confirmed copy of
    each is on its way (the overdue sweep then leaves them alone for a while)."""
    await conn.execute(_DELIVERIES_SQL["handed_on"], delivery_ids)


async def pending_again(conn: Connection, delivery_id: str) -> None:
    """Set a delivery back to pending, due now (a dead one redriven by hand)."""
    await conn.execute(_DELIVERIES_SQL["pending_again"], delivery_id)


async def cancel_pending_of_subscription(conn: Connection, subscription_id: str) -> int:
    """Cancel the pending deliveries of a subscription (it was deleted); how many."""
    cancelled = await conn.execute(
        _DELIVERIES_SQL["cancel_pending_of_subscription"], subscription_id
    )
    return int(cancelled.split()[-1])


async def cancel_pending_of_disabled(
    conn: Connection, subscription_ids: list[str], keep_delivery_ids: list[str]
) -> None:
    """Cancel the pending deliveries of these (disabled) subscriptions, but for
    `keep_delivery_ids`."""
    await conn.execute(
        _DELIVERIES_SQL["cancel_pending_of_disabled"], subscription_ids, keep_delivery_ids
    )


async def overdue(conn: Connection, overdue_s: float, limit: int) -> list[asyncpg.Record]:
    """Up to `limit` pending deliveries due more than `overdue_s` ago, most overdue first,
    with their event; locked (others skipped) until the transaction of `conn` ends."""
    return list(await conn.fetch(_DELIVERIES_SQL["overdue"], overdue_s, limit))


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
