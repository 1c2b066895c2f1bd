"""Fanout's matching: (tenant, event type) -> routes, read from Postgres through a bounded cache.

Fanout no longer holds every subscription (issue 17): an event's routes are read by
`shared.stores.subscriptions.load_routes` (indexed by tenant, and by pattern for untenanted
rows), batched with every other event's misses of the moment (`shared.coalesce`), and
remembered in a `RouteTable` of bounded size. Reads run on the LISTEN connection of
`shared.changes`, so they are ordered with the notifications:

- a notification drops at once every answer that lists the subscription, and queues its id;
  a task then reads the tenant of the queued rows and drops that tenant's answers (a new or
  changed subscription can change any of them). `sync()` waits for that task, so an event
  matched after `sync()` sees every change committed before it was published;
- an answer read while a notification arrived is returned but not remembered (the change may
  have come after the query's snapshot);
- a reconnect forgets everything.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from functools import partial

import asyncpg

from shared.changes import SUBSCRIPTIONS, ChangeFollower, Channel
from shared.coalesce import Coalescer
from shared.errors import StorageUnavailable
from shared.logging import get_logger
from shared.metrics import SUBSCRIPTIONS_CACHED
from shared.route_table import DEFAULT_MAX_SIZE, RouteTable
from shared.stores import subscriptions as subscription_store
from shared.subscriptions import Route, RouteKey

log = get_logger("subscription_cache")


class RoutingCache:
    """Where each event goes, fresh after `sync()`; `start()` before use and `close()` after."""

    def __init__(
        self, database_url: str, *, service: str, max_size: int = DEFAULT_MAX_SIZE
    ) -> None:
        self._service = service
        self._table = RouteTable(max_size)
        self._follower = ChangeFollower(
            database_url,
            service=service,
            channels=[Channel(SUBSCRIPTIONS, on_notify=self._on_notify, on_reset=self._on_reset)],
        )
        self._loader: Coalescer[RouteKey, tuple[Route, ...]] = Coalescer(
            self._load, name=f"routing-cache-load-{service}"
        )
        self._fresh: Coalescer[RouteKey, tuple[Route, ...]] = Coalescer(
            self._load_fresh, name=f"routing-cache-fresh-{service}"
        )
        self._dirty: set[str] = set()
        self._reload_task: asyncio.Task[None] | None = None
        self._notified = False
        self._loading = False
        self._gauge = SUBSCRIPTIONS_CACHED.labels(service)

    # Lifecycle

    async def start(self) -> None:
        """Connect and LISTEN; returns at once, nothing is loaded ahead.

        Raises StorageUnavailable when Postgres cannot be reached at start.
        """
        await self._follower.start()

    async def close(self) -> None:
        """Stop listening and close the connection."""
        if self._reload_task is not None:
            self._reload_task.cancel()
            await asyncio.gather(self._reload_task, return_exceptions=True)
        await self._loader.close()
        await self._fresh.close()
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
        """How many round trips have read or checked answers (each for many callers)."""
        return self._loader.loads + self._fresh.loads

    # Reads

    async def sync(self) -> None:
        """Return once every change committed before this call is reflected in answers.

        Raises StorageUnavailable while the connection is down or the round trip failed:
        matching could then send an event to a deleted subscription or miss a new one.
        """
        await self._follower.sync()
        await self.settle()
        if not self._follower.ready():
            raise StorageUnavailable("the subscription cache lost its Postgres connection")

    async def settle(self) -> None:
        """Return once every change notified so far has dropped the answers it touches."""
        while (task := self._reload_task) is not None and not task.done():
            # wait(), not await: the caller must not be cancelled with it nor get its errors.
            await asyncio.wait([task])

    async def current(self, keys: Collection[RouteKey]) -> dict[RouteKey, tuple[Route, ...]]:
        """`sync()` then `routes(keys)`, in one round trip shared by every caller meanwhile.

        The round trip reads the keys not in memory; its answer comes after the
        notifications of every change committed before the call, so once those have dropped
        what they touch, the remembered answers still there are fresh too (those dropped
        are read in another round trip). Fanout calls this once per event.

        Raises StorageUnavailable as `sync()` does.
        """
        if not self._follower.ready():
            raise StorageUnavailable("the subscription cache is reconnecting to Postgres")
        return await self._fresh.get(keys)

    async def _load_fresh(self, keys: list[RouteKey]) -> dict[RouteKey, tuple[Route, ...]]:
        found: dict[RouteKey, tuple[Route, ...]] = {}
        pending = keys
        while pending:
            missing = [k for k in pending if self._table.get(k) is None]
            if missing:
                found.update(await self._follower.run(partial(self._read, keys=missing)))
            else:
                await self._follower.run(_probe)
            await self.settle()
            if not self._follower.connected:
                # A change notified meanwhile may not have dropped its tenant's answers.
                raise StorageUnavailable("the subscription cache lost its Postgres connection")
            recheck: list[RouteKey] = []
            for key in pending:
                if key in found:
                    continue
                routes = self._table.get(key)
                if routes is None:
                    recheck.append(key)  # dropped by a change notified meanwhile
                else:
                    found[key] = routes
            pending = recheck
        return found

    async def match(self, event_type: str, tenant_id: str | None) -> list[Route]:
        """The enabled subscriptions an event goes to, each once (CONTRACT section 3).

        Raises StorageUnavailable when the answer must be read and Postgres is unreachable.
        """
        key = (tenant_id, event_type)
        return list((await self.routes([key]))[key])

    async def routes(self, keys: Collection[RouteKey]) -> dict[RouteKey, tuple[Route, ...]]:
        """The routes of each key; the keys not in memory are read in one shared query."""
        found: dict[RouteKey, tuple[Route, ...]] = {}
        missing: list[RouteKey] = []
        for key in keys:
            routes = self._table.get(key)
            if routes is None:
                missing.append(key)
            else:
                found[key] = routes
        if missing:
            found.update(await self._loader.get(missing))
        return found

    def peek(self, event_type: str, tenant_id: str | None) -> list[Route] | None:
        """The answer in memory now, None when there is none; never reads Postgres."""
        routes = self._table.get((tenant_id, event_type))
        return None if routes is None else list(routes)

    def __len__(self) -> int:
        return len(self._table)

    # Loading and invalidation

    async def _load(self, keys: list[RouteKey]) -> dict[RouteKey, tuple[Route, ...]]:
        return await self._follower.run(partial(self._read, keys=keys))

    async def _read(
        self, conn: asyncpg.Connection, *, keys: list[RouteKey]
    ) -> dict[RouteKey, tuple[Route, ...]]:
        self._notified, self._loading = False, True
        try:
            found = await subscription_store.load_routes(conn, keys)
        finally:
            self._loading = False
        # No await from here on: a notification now comes after these are stored.
        if not self._notified:
            for key, routes in found.items():
                self._table.put(key, routes)
            self._gauge.set(self._table.size)
        return found

    def _on_notify(self, subscription_id: str) -> None:
        if self._loading:
            self._notified = True
        self._table.forget_subscription(subscription_id)
        self._gauge.set(self._table.size)
        self._dirty.add(subscription_id)
        if self._reload_task is None or self._reload_task.done():
            self._reload_task = asyncio.create_task(
                self._forget_tenants(), name=f"routing-cache-reload-{self._service}"
            )

    async def _forget_tenants(self) -> None:
        while self._dirty:
            ids, self._dirty = list(self._dirty), set()
            try:
                tenants = await self._follower.run(
                    partial(subscription_store.tenants_of, subscription_ids=ids)
                )
            except StorageUnavailable:
                return  # the reconnect forgets everything anyway
            for tenant in tenants:
                self._table.forget_tenant(tenant)
            self._gauge.set(self._table.size)
            log.debug("routes_forgotten", subscriptions=len(ids), tenants=len(tenants))

    def _on_reset(self) -> None:
        self._dirty.clear()
        self._table.clear()
        self._gauge.set(0)


async def _probe(conn: asyncpg.Connection) -> None:
    await conn.execute("SELECT 1")
