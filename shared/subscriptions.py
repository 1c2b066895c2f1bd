"""The subscription as fanout and sender see it; `shared.stores.subscriptions` loads it.

The sender reads whole subscriptions by id (`load_many`); fanout reads only routes, the id
and park of each subscription an (tenant, event type) goes to (`load_routes`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from shared.secretbox import SecretBox
from shared.signing import secret_bytes


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
    """The subscription of a row of `target_columns`; raises when a secret does not open."""
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


RouteKey = tuple[str | None, str]
"""(tenant id, event type): the tenant rule is part of the key (CONTRACT section 3)."""


@dataclass(frozen=True, slots=True)
class Route:
    """Where fanout sends an event: an enabled subscription's id, and its park if any."""

    id: str
    parked_until: datetime | None = None
    """While in the future the target is parked (stuck): fanout sends its new deliveries
    straight to a retry queue."""
