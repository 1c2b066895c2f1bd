"""Stored events: inserted in batches once per tenant's idempotency key, marked dispatched.

Which ingest process publishes an undispatched event is decided here, in the database, so
that replicas sharing it never both publish one key: storing a new row claims it
(`dispatch_claimed_at`); taking over an older undispatched row is `claim_dispatch()`. The
claim's timestamp is its holder's token: only the holder of that very claim may release it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from shared.models import EventIn
from shared.sql import queries
from shared.stores import connection

_DELIVERIES_SQL = queries("deliveries")
_EVENTS_SQL = queries("events")

_COLUMNS = "id, type, data, tenant_id, idempotency_key, source, created_at, dispatched_at"

# One statement for a whole batch: the rows it inserted, then the rows already holding the
# keys it skipped. A key is its tenant's (`scope`: the tenant_id, '' without one) and lives
# in `idempotency_keys`; one past the window ($7 seconds after its first acceptance) is
# taken over by the new event. The last branch reads the snapshot from before the INSERTs,
# so it sees only keys that existed before; a key committed by another process meanwhile
# is read after (`_BY_KEYS`). Each key's event is looked up by id, pruned to its partition
# (OFFSET 0 keeps the planner from hashing every event instead).
_INSERT_MANY = f"""
WITH input AS (
    SELECT t.*, COALESCE(t.tenant_id, '') AS scope
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
        AS t(id, type, data, tenant_id, idempotency_key, source)
), keyed AS (
    INSERT INTO idempotency_keys AS k (scope, key, event_id)
    SELECT scope, idempotency_key, id FROM input WHERE idempotency_key IS NOT NULL
    ON CONFLICT (scope, key) DO UPDATE SET event_id = excluded.event_id, accepted_at = now()
        WHERE k.accepted_at <= now() - $7::float8 * interval '1 second'
    RETURNING k.event_id
), inserted AS (
    INSERT INTO events (id, type, data, tenant_id, idempotency_key, source, dispatch_claimed_at)
    SELECT id, type, data::jsonb, tenant_id, idempotency_key, source, now() FROM input
    WHERE idempotency_key IS NULL OR id IN (SELECT event_id FROM keyed)
    RETURNING {_COLUMNS}, dispatch_claimed_at
)
SELECT true AS inserted, {_COLUMNS}, dispatch_claimed_at FROM inserted
UNION ALL
SELECT false, {", ".join("e." + c for c in _COLUMNS.split(", "))}, NULL
FROM input i
JOIN idempotency_keys k ON k.scope = i.scope AND k.key = i.idempotency_key
JOIN LATERAL (SELECT * FROM events e WHERE e.id = k.event_id OFFSET 0) e ON true
WHERE i.id NOT IN (SELECT event_id FROM keyed)
"""
_BY_KEYS = f"""
SELECT {", ".join("e." + c for c in _COLUMNS.split(", "))}
FROM unnest($1::text[], $2::text[]) AS i(scope, key)
JOIN idempotency_keys k USING (scope, key)
JOIN LATERAL (SELECT * FROM events e WHERE e.id = k.event_id OFFSET 0) e ON true
"""
_BY_ID = f"SELECT {_COLUMNS} FROM events WHERE id = $1"
# The UPDATE re-checks its condition on the newest row version, so of two processes claiming
# one event at once exactly one gets it. The SELECT reads the statement's snapshot: a row
# dispatched meanwhile may still look undispatched (and unclaimed here), never the reverse.
_CLAIM = f"""
WITH claimed AS (
    UPDATE events SET dispatch_claimed_at = now()
    WHERE id = ANY($1::text[]) AND dispatched_at IS NULL
      AND (dispatch_claimed_at IS NULL
           OR dispatch_claimed_at < now() - $2::float8 * interval '1 second')
    RETURNING id, dispatch_claimed_at
)
SELECT c.dispatch_claimed_at AS claim, {", ".join("e." + c for c in _COLUMNS.split(", "))}
FROM events e LEFT JOIN claimed c ON c.id = e.id
WHERE e.id = ANY($1::text[])
"""


DEFAULT_WINDOW_S = 86400.0
"""HOOKLINE_IDEMPOTENCY_WINDOW's default (CONTRACT section 1)."""

_FIELDS = tuple(_COLUMNS.split(", "))


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
        return cls(*(row[name] for name in _FIELDS))


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
        rows = await conn.fetch(_INSERT_MANY, *columns, window_s)
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
            for r in await conn.fetch(_BY_KEYS, list(scopes), list(keys)):
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
        rows = await conn.fetch(_CLAIM, event_ids, stale_after_s)
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
        row = await conn.fetchrow(_BY_ID, event_id)
        if row is None:
            return None
        deliveries = await conn.fetch(_DELIVERIES_SQL["of_event"], event_id)
    return StoredEvent.from_row(row), list(deliveries)
