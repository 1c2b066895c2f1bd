"""The subscription as fanout and sender see it, and the SQL that loads it.

The sender reads whole subscriptions by id (`load_many`); fanout reads only routes, the id
and park of each subscription an (tenant, event type) goes to (`load_routes`), answered by
the indexes of migrations 0001 and 0020 whatever the size of the table.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from shared.errors import ConfigurationError
from shared.matching import candidate_keys
from shared.secretbox import ENCRYPTED_PREFIX, SecretBox
from shared.signing import secret_bytes
from shared.sql import queries

_SUBSCRIPTIONS_SQL = queries("subscriptions")


@dataclass(frozen=True, slots=True)
class SubscriptionTarget:
    """A subscription as the sender delivers to it: its URL, status, park and decoded keys."""

    id: str
    url: str
    event_types: tuple[str, ...]
    enabled: bool
    tenant_id: str | None
    keys: tuple[bytes, ...]
    """The current secret's key, then the previous one while it is still live."""
    previous_key_expires_at: datetime | None
    parked_until: datetime | None = None
    """While in the future the target is parked (stuck): fanout sends its new deliveries
    straight to a retry queue."""

    def live_keys(self, now: datetime) -> list[bytes]:
        """Keys to sign with at `now`: the old secret signs beside the new for its grace time."""
        if (
            len(self.keys) > 1
            and self.previous_key_expires_at
            and now < self.previous_key_expires_at
        ):
            return list(self.keys)
        return [self.keys[0]]


def from_row(row: asyncpg.Record, box: SecretBox) -> SubscriptionTarget:
    keys = [secret_bytes(box.open(row["secret"]))]
    if row["previous_secret"]:
        keys.append(secret_bytes(box.open(row["previous_secret"])))
    return SubscriptionTarget(
        id=row["id"],
        url=row["url"],
        event_types=tuple(row["event_types"]),
        enabled=row["status"] == "enabled" and row["deleted_at"] is None,
        tenant_id=row["tenant_id"],
        keys=tuple(keys),
        previous_key_expires_at=row["previous_secret_expires_at"],
        parked_until=row["parked_until"],
    )


async def load_all(conn: asyncpg.Connection, box: SecretBox) -> list[SubscriptionTarget]:
    """Every subscription that is not deleted."""
    rows = await conn.fetch(_SUBSCRIPTIONS_SQL["targets_all"])
    return [from_row(r, box) for r in rows]


async def load_one(
    conn: asyncpg.Connection, subscription_id: str, box: SecretBox
) -> SubscriptionTarget | None:
    """One subscription; None when it does not exist or was deleted."""
    row = await conn.fetchrow(_SUBSCRIPTIONS_SQL["target"], subscription_id)
    return from_row(row, box) if row else None


async def load_many(
    conn: asyncpg.Connection, subscription_ids: Sequence[str], box: SecretBox
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


async def check_secret_key(conn: asyncpg.Connection, box: SecretBox) -> None:
    """Open one stored encrypted secret: raises ConfigurationError when the key cannot."""
    sealed = await conn.fetchval(_SUBSCRIPTIONS_SQL["one_encrypted_secret"], ENCRYPTED_PREFIX + "%")
    if sealed is not None:
        box.open(sealed)


RouteKey = tuple[str | None, str]
"""(tenant id, event type): the tenant rule is part of the key (CONTRACT section 3)."""


@dataclass(frozen=True, slots=True)
class Route:
    """Where fanout sends an event: an enabled subscription's id, and its park if any."""

    id: str
    parked_until: datetime | None = None
    """While in the future the target is parked (stuck): fanout sends its new deliveries
    straight to a retry queue."""


async def load_routes(
    conn: asyncpg.Connection, keys: Sequence[RouteKey]
) -> dict[RouteKey, tuple[Route, ...]]:
    """The routes of each key, every key answered (an empty tuple when nothing matches)."""
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
