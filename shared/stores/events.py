"""Stored events: inserted in batches once per tenant's idempotency key, marked dispatched.

Which ingest process publishes an undispatched event is decided here, in the database, so
that replicas sharing it never both publish one key: storing a new row claims it
(`dispatch_claimed_at`); taking over an older undispatched row is `claim_dispatch()`. The
claim's timestamp is its holder's token: only the holder of that very claim may release it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from shared.models import EventIn
from shared.sql import queries
from shared.stores import Connection, connection
from shared.stores import deliveries as delivery_store

_EVENTS_SQL = queries("events").require(
    "insert_many",
    "by_keys",
    "list_page",
    "insert_test_event",
    "claim",
    "release_claims",
    "dispatch_state",
    "mark_dispatched",
    "get",
)


DEFAULT_WINDOW_S = 86400.0
"""HOOKLINE_IDEMPOTENCY_WINDOW's default (CONTRACT section 1)."""


@dataclass(frozen=True, slots=True)
class StoredEvent:
    id: str
    type: str
    data: dict[str, Any]
    tenant_id: str | None
    idempotency_key: str | None
    source: str
    created_at: datetime
    dispatched_at: datetime | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> StoredEvent:
        return cls(*(row[name] for name in _STORED_FIELDS))


_STORED_FIELDS = tuple(field.name for field in fields(StoredEvent))
"""The columns every statement reading events returns (the fragment `columns`)."""


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to store, under the id it gets when its key is new."""

    id: str
    event: EventIn
    source: str


Claim = datetime
"""The `dispatch_claimed_at` a process set when it claimed an event: its release token."""


def _stored_key(stored: StoredEvent) -> tuple[str, str | None]:
    return (stored.tenant_id or "", stored.idempotency_key)


async def insert_many(
    pool: asyncpg.Pool, new: Sequence[NewEvent], window_s: float = DEFAULT_WINDOW_S
) -> list[tuple[StoredEvent, Claim | None]]:
    """Store a batch in one statement; per row (stored, its claim), or (the key's first, None).

    Storing a row claims it for this caller. A key is remembered for `window_s` from its
    first acceptance, per tenant. The keys of `new` must be distinct within their scopes
    (the caller merges copies of a key).
    """
    columns: tuple[list[Any], ...] = ([], [], [], [], [], [])
    for row in new:
        event = row.event
        values = (
            row.id,
            event.type,
            orjson.dumps(event.data).decode(),
            event.tenant_id,
            event.id,
            row.source,
        )
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    async with connection(pool) as conn:
        rows = await conn.fetch(_EVENTS_SQL["insert_many"], *columns, window_s)
        by_id: dict[str, tuple[StoredEvent, Claim | None]] = {
            r["id"]: (StoredEvent.from_row(r), r["dispatch_claimed_at"])
            for r in rows
            if r["inserted"]
        }
        by_key: dict[tuple[str, str | None], tuple[StoredEvent, Claim | None]] = {}
        for r in rows:
            if not r["inserted"]:
                stored = StoredEvent.from_row(r)
                by_key[_stored_key(stored)] = (stored, None)
        late = [
            _new_key(r)
            for r in new
            if r.event.id is not None and r.id not in by_id and _new_key(r) not in by_key
        ]
        if late:
            scopes, keys = zip(*late, strict=True)
            for r in await conn.fetch(_EVENTS_SQL["by_keys"], list(scopes), list(keys)):
                stored = StoredEvent.from_row(r)
                by_key[_stored_key(stored)] = (stored, None)
    # A row neither inserted nor found conflicted on its key, whose row then exists (a key's
    # event outlives its window): a KeyError here would be a bug, not an outage.
    return [by_id.get(r.id) or by_key[_new_key(r)] for r in new]


def _new_key(row: NewEvent) -> tuple[str, str | None]:
    return (row.event.tenant_id or "", row.event.id)


async def claim_dispatch(
    pool: asyncpg.Pool, event_ids: list[str], stale_after_s: float
) -> dict[str, tuple[StoredEvent, Claim | None]]:
    """Try to become the one process publishing these stored events (one query for all).

    Per id: (the row, its claim) when this caller now holds the claim and must publish it,
    or (the row, None) when it is dispatched or another process's fresh claim holds it. A
    claim older than `stale_after_s` (its process died or hung) can be taken over.
    """
    if not event_ids:
        return {}
    async with connection(pool) as conn:
        rows = await conn.fetch(_EVENTS_SQL["claim"], event_ids, stale_after_s)
    return {r["id"]: (StoredEvent.from_row(r), r["claim"]) for r in rows}


async def release_dispatch(pool: asyncpg.Pool, claims: dict[str, Claim]) -> None:
    """Give up claims (event id: claim) whose publish failed, so the next copy publishes.

    A claim another process took over meanwhile (it went stale) stays theirs.
    """
    if not claims:
        return
    async with connection(pool) as conn:
        await conn.execute(_EVENTS_SQL["release_claims"], list(claims), list(claims.values()))


async def dispatch_state(pool: asyncpg.Pool, event_id: str) -> tuple[datetime | None, bool]:
    """(dispatched_at, whether a claim is held) of a stored event, in one query."""
    async with connection(pool) as conn:
        row = await conn.fetchrow(_EVENTS_SQL["dispatch_state"], event_id)
    if row is None:
        return None, False
    return row["dispatched_at"], row["dispatch_claimed_at"] is not None


async def mark_dispatched(pool: asyncpg.Pool, event_ids: list[str]) -> None:
    """Record that these events were confirmed on `{ns}.events` (one query for all)."""
    async with connection(pool) as conn:
        await conn.execute(_EVENTS_SQL["mark_dispatched"], event_ids)


async def get(pool: asyncpg.Pool, event_id: str) -> tuple[StoredEvent, list[asyncpg.Record]] | None:
    """An event and its deliveries (id, subscription_id, status, attempts), or None."""
    async with connection(pool) as conn:
        row = await conn.fetchrow(_EVENTS_SQL["get"], event_id)
        if row is None:
            return None
        deliveries = await delivery_store.of_event(conn, event_id)
    return StoredEvent.from_row(row), deliveries


async def list_page(
    pool: asyncpg.Pool,
    *,
    event_type: str | None,
    tenant_id: str | None,
    before: tuple[datetime, str] | None,
    limit: int,
    tenant_scope: str | None = None,
) -> tuple[list[asyncpg.Record], dict[str, dict[str, int]]]:
    """The events list (GET /v1/events): events older than `before` (created_at, id), newest
    first; and per event id, how many of its deliveries (to subscriptions of `tenant_scope`,
    unless None) are in each status."""
    created, last_id = before if before else (None, None)
    async with connection(pool) as conn:
        rows = list(
            await conn.fetch(
                _EVENTS_SQL["list_page"], event_type, tenant_id, created, last_id, limit
            )
        )
        counts = (
            await delivery_store.counts_by_event(conn, [row["id"] for row in rows], tenant_scope)
            if rows
            else {}
        )
    return rows, counts


async def insert_test(
    conn: Connection, event_id: str, event_type: str, data: dict[str, Any], tenant_id: str | None
) -> datetime:
    """Store a test event, already dispatched (it never goes to fanout); its created_at."""
    created_at: datetime = await conn.fetchval(
        _EVENTS_SQL["insert_test_event"], event_id, event_type, data, tenant_id
    )
    return created_at
