"""The sender's subscriptions (URL, status, signing keys): a bounded LRU, loaded on demand.

The sender holds only the subscriptions it is delivering to, at most `max_size` of them, not
the whole table (issue 17: 1.7 GB at a million subscriptions). A miss is read from Postgres
together with every other miss of the moment (`shared.coalesce`: one query for a batch
message's deliveries, not one per delivery), on the LISTEN connection of
`shared.changes`: a notified change drops that subscription from the LRU at
once, so the next read gets the new row; a reconnect drops everything.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection

import asyncpg

from shared.changes import SUBSCRIPTIONS, ChangeFollower, Channel
from shared.coalesce import Coalescer
from shared.logging import get_logger
from shared.metrics import SUBSCRIPTIONS_CACHED
from shared.secretbox import SecretBox
from shared.stores import subscriptions as subscription_store
from shared.subscriptions import SubscriptionTarget

DEFAULT_MAX_SIZE = 10_000
"""Measured (tracemalloc) at ~0.5 KB each: ~5 MB at most, whatever the size of the table."""

log = get_logger("subscription_cache")


class SubscriptionLRU:
    """At most `max_size` subscriptions by id, the least recently read dropped first."""

    def __init__(self, max_size: int) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self.max_size = max_size
        self._items: OrderedDict[str, SubscriptionTarget] = OrderedDict()

    def get(self, subscription_id: str) -> SubscriptionTarget | None:
        sub = self._items.get(subscription_id)
        if sub is not None:
            self._items.move_to_end(subscription_id)
        return sub

    def put(self, sub: SubscriptionTarget) -> None:
        self._items[sub.id] = sub
        self._items.move_to_end(sub.id)
        while len(self._items) > self.max_size:
            self._items.popitem(last=False)

    def discard(self, subscription_id: str) -> None:
        self._items.pop(subscription_id, None)

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, subscription_id: object) -> bool:
        return subscription_id in self._items


class SubscriptionCache:
    """The subscriptions the sender delivers to, by id, fresh within a NOTIFY.

    `start()` before use and `close()` after. `get` answers from memory when it can, else
    reads the row (batched with concurrent misses); `peek` never reads.
    """

    def __init__(
        self,
        database_url: str,
        box: SecretBox,
        *,
        service: str,
        max_size: int = DEFAULT_MAX_SIZE,
    ) -> None:
        self._box = box
        self._service = service
        self._lru = SubscriptionLRU(max_size)
        self._follower = ChangeFollower(
            database_url,
            service=service,
            channels=[Channel(SUBSCRIPTIONS, on_notify=self._on_notify, on_reset=self._on_reset)],
        )
        self._loader: Coalescer[str, SubscriptionTarget | Exception] = Coalescer(
            self._load, name=f"subscription-cache-load-{service}"
        )
        self._notified: set[str] | None = None
        """Ids notified while a load is out: what it read of them may predate the change."""
        self._gauge = SUBSCRIPTIONS_CACHED.labels(service)

    # Lifecycle

    async def start(self) -> None:
        """Connect and LISTEN; returns at once, nothing is loaded ahead.

        Raises StorageUnavailable when Postgres cannot be reached at start, and
        ConfigurationError when a stored secret does not open with HOOKLINE_SECRET_KEY.
        """
        await self._follower.start()
        try:
            await self._follower.run(
                lambda conn: subscription_store.check_secret_key(conn, self._box)
            )
        except BaseException:
            await self._follower.close()
            raise

    async def close(self) -> None:
        """Stop listening and close the connection; the cache keeps its last state."""
        await self._loader.close()
        await self._follower.close()

    def ready(self) -> bool:
        """True while the LISTEN connection is up (changes are heard)."""
        return self._follower.ready()

    @property
    def connected(self) -> bool:
        """True while the LISTEN connection is up."""
        return self._follower.connected

    @property
    def reads(self) -> int:
        """How many queries have read what was not in memory (each for many callers)."""
        return self._loader.loads

    # Reads

    async def get(self, subscription_id: str) -> SubscriptionTarget | None:
        """The subscription; None when deleted or unknown. A disabled one has enabled=False.

        Raises StorageUnavailable when it must be read and Postgres cannot be reached, and
        ConfigurationError when its secret does not open.
        """
        return (await self.get_many([subscription_id])).get(subscription_id)

    async def get_many(self, subscription_ids: Collection[str]) -> dict[str, SubscriptionTarget]:
        """The subscriptions of `subscription_ids` that exist (deleted ones are absent).

        The misses are read in one query, shared with other callers'. Raises as `get`.
        """
        found: dict[str, SubscriptionTarget] = {}
        missing: list[str] = []
        for sub_id in subscription_ids:
            sub = self._lru.get(sub_id)
            if sub is None:
                missing.append(sub_id)
            else:
                found[sub_id] = sub
        if missing:
            for sub_id, value in (await self._loader.get(missing)).items():
                if isinstance(value, Exception):
                    raise value
                found[sub_id] = value
        return found

    def peek(self, subscription_id: str) -> SubscriptionTarget | None:
        """The subscription if it is in memory now; never reads Postgres."""
        return self._lru.get(subscription_id)

    def __len__(self) -> int:
        return len(self._lru)

    # Loading and invalidation

    async def _load(self, subscription_ids: list[str]) -> dict[str, SubscriptionTarget | Exception]:
        return await self._follower.run(lambda conn: self._read(conn, subscription_ids))

    async def _read(
        self, conn: asyncpg.Connection, subscription_ids: list[str]
    ) -> dict[str, SubscriptionTarget | Exception]:
        self._notified = set()
        try:
            found = await subscription_store.load_many(conn, subscription_ids, self._box)
        finally:
            notified, self._notified = self._notified, None
        # No await from here on: a notification now comes after these are stored, and
        # drops them. One that came during the query may name a change it did not see.
        for sub_id, value in found.items():
            if isinstance(value, Exception):
                log.error("subscription_unreadable", subscription_id=sub_id, error=repr(value))
            elif sub_id not in notified:
                self._lru.put(value)
        self._gauge.set(len(self._lru))
        return found

    def _on_notify(self, subscription_id: str) -> None:
        if self._notified is not None:
            self._notified.add(subscription_id)
        self._lru.discard(subscription_id)
        self._gauge.set(len(self._lru))

    def _on_reset(self) -> None:
        self._lru.clear()
        self._gauge.set(0)
