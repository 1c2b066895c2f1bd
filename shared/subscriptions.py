"""The subscription as fanout and sender see it, and the SQL that loads it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from shared.secretbox import SecretBox
from shared.signing import secret_bytes

_COLUMNS = (
    "id, url, event_types, status, tenant_id, secret, previous_secret,"
    " previous_secret_expires_at, deleted_at, parked_until"
)


@dataclass(frozen=True, slots=True)
class Subscription:
    """A live subscription with its signing keys already decoded."""

    id: str
    url: str
    event_types: tuple[str, ...]
    enabled: bool
    tenant_id: str | None
    keys: tuple[bytes, ...]
    """The current secret's key, then the previous one while it is still live."""
    previous_key_expires_at: datetime | None
    parked_until: datetime | None = None
    """While in the future, fanout parks new deliveries in a retry queue (a stuck target)."""

    def live_keys(self, now: datetime) -> list[bytes]:
        """Keys to sign with at `now`: the old secret signs beside the new for its grace time."""
        if (
            len(self.keys) > 1
            and self.previous_key_expires_at
            and now < self.previous_key_expires_at
        ):
            return list(self.keys)
        return [self.keys[0]]


def from_row(row: asyncpg.Record, box: SecretBox) -> Subscription:
    keys = [secret_bytes(box.open(row["secret"]))]
    if row["previous_secret"]:
        keys.append(secret_bytes(box.open(row["previous_secret"])))
    return Subscription(
        id=row["id"],
        url=row["url"],
        event_types=tuple(row["event_types"]),
        enabled=row["status"] == "enabled" and row["deleted_at"] is None,
        tenant_id=row["tenant_id"],
        keys=tuple(keys),
        previous_key_expires_at=row["previous_secret_expires_at"],
        parked_until=row["parked_until"],
    )


async def load_all(conn: asyncpg.Connection, box: SecretBox) -> list[Subscription]:
    """Every subscription that is not deleted."""
    rows = await conn.fetch(f"SELECT {_COLUMNS} FROM subscriptions WHERE deleted_at IS NULL")
    return [from_row(r, box) for r in rows]


async def load_one(
    conn: asyncpg.Connection, subscription_id: str, box: SecretBox
) -> Subscription | None:
    """One subscription; None when it does not exist or was deleted."""
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM subscriptions WHERE id = $1 AND deleted_at IS NULL",
        subscription_id,
    )
    return from_row(row, box) if row else None
