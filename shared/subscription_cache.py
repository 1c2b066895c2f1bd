"""Every subscription in memory, kept fresh by Postgres LISTEN/NOTIFY (issue 3: within 1 s).

Fanout matches each event against this cache instead of querying, and the sender reads a
subscription's URL, status and keys from it. One dedicated connection LISTENs on
`hookline_subscriptions` (the trigger of migration 0001 notifies the changed row's id); each
notification reloads that one row. When the connection is lost, the cache reconnects with a
capped backoff and reloads everything, since notifications sent meanwhile are gone; it reports
not ready until then and keeps serving what it last knew.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from shared.errors import DATABASE_ERRORS, ConfigurationError, StorageUnavailable
from shared.logging import get_logger
from shared.matching import candidate_keys
from shared.metrics import SUBSCRIPTIONS_CACHED
from shared.secretbox import SecretBox
from shared.subscriptions import Subscription, load_all, load_one
from shared.supervision import spawn

CHANNEL = "hookline_subscriptions"

_BACKOFF_FIRST_S = 0.1
_BACKOFF_MAX_S = 5.0
_KEEPALIVE_S = 5.0
"""How often the idle LISTEN connection is probed, so a silently dead one is noticed."""
_QUERY_TIMEOUT_S = 10.0
_MEMO_MAX = 10_000
"""Memoized (event type, tenant) answers kept before the memo starts over."""

_CONNECTION_ERRORS = DATABASE_ERRORS
# A secret that stopped opening is an operator's fix: the watcher keeps trying meanwhile.
_RECONNECT_ERRORS: tuple[type[BaseException], ...] = (
    *DATABASE_ERRORS,
    ConfigurationError,
    ValueError,
)

log = get_logger("subscription_cache")

_IndexKey = tuple[str | None, str]
"""(tenant id, pattern): the tenant rule is part of the key, so matching never filters."""


class SubscriptionCache:
    """All live subscriptions, indexed by (tenant, pattern) for matching in a few dict lookups.

    `start()` before use and `close()` after. `match` and `get` are plain synchronous reads of
    the current state; they never wait on the database.
    """

    def __init__(self, database_url: str, box: SecretBox, *, service: str) -> None:
        self._database_url = database_url
        self._box = box
        self._service = service
        self._by_id: dict[str, Subscription] = {}
        self._index: dict[_IndexKey, dict[str, Subscription]] = {}
        self._memo: dict[tuple[str, str | None], list[Subscription]] = {}
        self._conn: asyncpg.Connection | None = None
        self._loaded = False
        self._connected = False
        self._closing = False
        # One reader at a time on the one connection, and in notification order: a row read
        # earlier can then never overwrite one read later.
        self._lock = asyncio.Lock()
        self._dirty: set[str] = set()
        self._reload_task: asyncio.Task[None] | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._sync_task: asyncio.Task[None] | None = None
        self._next_sync: asyncio.Future[None] | None = None
        self._lost = asyncio.Event()
        self._gauge = SUBSCRIPTIONS_CACHED.labels(service)

    # Lifecycle

    async def start(self) -> None:
        """Connect, LISTEN and load every subscription; returns once loaded.

        Raises StorageUnavailable when Postgres cannot be reached at start, and
        ConfigurationError when a stored secret does not open with HOOKLINE_SECRET_KEY.
        """
        try:
            await self._connect_and_load()
        except _CONNECTION_ERRORS as exc:
            await self._drop_connection()
            raise StorageUnavailable(f"cannot load subscriptions: {exc}") from exc
        except BaseException:
            await self._drop_connection()
            raise
        self._watch_task = spawn(self._watch(), name=f"subscription-cache-watch-{self._service}")

    async def close(self) -> None:
        """Stop listening and close the connection; the cache keeps its last state."""
        self._closing = True
        tasks = [t for t in (self._watch_task, self._reload_task, self._sync_task) if t]
        for task in tasks:
            task.cancel()
        # Their outcome no longer matters; none may stop the close.
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._drop_connection()

    def ready(self) -> bool:
        """True while the LISTEN connection is up and the cache is loaded."""
        watching = self._watch_task is not None and not self._watch_task.done()
        return self._loaded and self._connected and not self._lost.is_set() and watching

    # Reads

    def match(self, event_type: str, tenant_id: str | None) -> list[Subscription]:
        """The enabled subscriptions an event goes to, each once (CONTRACT section 3).

        An event with a tenant goes only to subscriptions of that tenant; one without goes
        only to subscriptions without one.
        """
        memo_key = (event_type, tenant_id)
        found = self._memo.get(memo_key)
        if found is None:
            found = self._compute_match(event_type, tenant_id)
            if len(self._memo) >= _MEMO_MAX:
                self._memo.clear()
            self._memo[memo_key] = found
        return list(found)

    def get(self, subscription_id: str) -> Subscription | None:
        """The subscription; None when deleted or unknown. A disabled one has enabled=False."""
        return self._by_id.get(subscription_id)

    async def sync(self) -> None:
        """Return once every change committed before this call is in the cache.

        One round trip on the LISTEN connection, shared by every caller waiting meanwhile:
        Postgres sends the notifications of earlier commits before it answers, and then the
        rows they name are read. Fanout calls it before matching an event, so a subscription
        created just before the event was published gets it.

        Raises StorageUnavailable while the connection is down, and when the round trip
        failed: the cache may then be missing changes, and matching against it could send
        an event to a deleted subscription or miss a new one. The caller retries later.
        """
        if not self.ready():
            raise StorageUnavailable("the subscription cache is reconnecting to Postgres")
        waiter = self._next_sync
        if waiter is None:
            waiter = self._next_sync = asyncio.get_running_loop().create_future()
            if self._sync_task is None or self._sync_task.done():
                self._sync_task = asyncio.create_task(
                    self._run_syncs(), name=f"subscription-cache-sync-{self._service}"
                )
        await asyncio.shield(waiter)
        await self.settle()
        if not self.ready():
            raise StorageUnavailable("the subscription cache lost its Postgres connection")

    async def _run_syncs(self) -> None:
        # Callers arriving while a round trip is out wait for the next one: the round trip
        # they need must start after they asked.
        while (waiter := self._next_sync) is not None:
            self._next_sync = None
            try:
                await self._probe()
            finally:
                # Even after a failed round trip: callers go on with what the cache knows.
                waiter.set_result(None)

    def reloading(self) -> bool:
        """True while notified changes are still being read (then `settle()` waits for them)."""
        task = self._reload_task
        return task is not None and not task.done()

    async def settle(self) -> None:
        """Return once every change notified so far is in the cache.

        Returns at once while the connection is down: the full reload will come later.
        """
        while (task := self._reload_task) is not None and not task.done():
            # wait(), not await: the caller must not be cancelled with it nor get its errors.
            await asyncio.wait([task])

    def __len__(self) -> int:
        return len(self._by_id)

    def _compute_match(self, event_type: str, tenant_id: str | None) -> list[Subscription]:
        hits: dict[str, Subscription] = {}
        for pattern in candidate_keys(event_type):
            bucket = self._index.get((tenant_id, pattern))
            if bucket:
                # A subscription listing `invoice.*` and `invoice.paid` still gets one delivery.
                hits.update(bucket)
        return list(hits.values())

    # The index

    def _replace_all(self, subscriptions: list[Subscription]) -> None:
        self._by_id = {}
        self._index = {}
        for sub in subscriptions:
            self._put(sub)
        self._changed()

    def _apply(self, subscription_id: str, sub: Subscription | None) -> None:
        self._remove(subscription_id)
        if sub is not None:
            self._put(sub)
        self._changed()

    def _put(self, sub: Subscription) -> None:
        self._by_id[sub.id] = sub
        if not sub.enabled:
            return
        for pattern in set(sub.event_types):
            self._index.setdefault((sub.tenant_id, pattern), {})[sub.id] = sub

    def _remove(self, subscription_id: str) -> None:
        old = self._by_id.pop(subscription_id, None)
        if old is None:
            return
        for pattern in set(old.event_types):
            key = (old.tenant_id, pattern)
            bucket = self._index.get(key)
            if bucket is not None:
                bucket.pop(subscription_id, None)
                if not bucket:
                    del self._index[key]

    def _changed(self) -> None:
        self._memo.clear()
        self._gauge.set(len(self._by_id))

    # The connection

    async def _connect_and_load(self) -> None:
        # All under the lock: a probe or reload must not use the connection while LISTEN or
        # the load is running on it (asyncpg allows one operation at a time).
        async with self._lock:
            conn = await asyncpg.connect(self._database_url, timeout=_QUERY_TIMEOUT_S)
            self._conn = conn
            conn.add_termination_listener(self._on_terminated)
            # LISTEN before loading: a change committed during the load is then notified too.
            await conn.add_listener(CHANNEL, self._on_notify)
            # The full load supersedes every row reload queued so far.
            self._dirty.clear()
            subscriptions = await load_all(conn, self._box)
            self._replace_all(subscriptions)
            self._loaded = True
            self._connected = True
            self._lost.clear()
        log.info("subscriptions_loaded", service=self._service, count=len(subscriptions))

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        self._connected = False
        if conn is None or conn.is_closed():
            return
        conn.remove_termination_listener(self._on_terminated)
        try:
            await asyncio.wait_for(conn.close(), timeout=2.0)
        except _CONNECTION_ERRORS:
            conn.terminate()

    def _on_terminated(self, conn: Any) -> None:
        if conn is self._conn and not self._closing:
            self._mark_lost("connection closed")

    def _mark_lost(self, reason: str) -> None:
        if not self._lost.is_set():
            log.warning("subscription_listener_lost", service=self._service, reason=reason)
        self._connected = False
        self._lost.set()

    async def _watch(self) -> None:
        """Probe the connection while it is up; reconnect and reload all when it is lost."""
        while True:
            try:
                await asyncio.wait_for(self._lost.wait(), timeout=_KEEPALIVE_S)
            except TimeoutError:
                await self._probe()
                continue
            await self._reconnect()

    async def _probe(self) -> None:
        async with self._lock:
            conn = self._conn
            if conn is None or not self._connected:
                return  # the watcher is reconnecting
            try:
                await conn.execute("SELECT 1", timeout=_QUERY_TIMEOUT_S)
            except _CONNECTION_ERRORS as exc:
                self._mark_lost(f"{type(exc).__name__}: {exc}")

    async def _reconnect(self) -> None:
        delay_s = _BACKOFF_FIRST_S
        while True:
            await self._drop_connection()
            try:
                await self._connect_and_load()
            except _RECONNECT_ERRORS as exc:
                log.warning(
                    "subscription_listener_reconnect_failed",
                    service=self._service,
                    error=f"{type(exc).__name__}: {exc}",
                    retry_in_s=delay_s,
                )
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, _BACKOFF_MAX_S)
                continue
            log.info("subscription_listener_reconnected", service=self._service)
            return

    # Notifications

    def _on_notify(self, conn: Any, pid: int, channel: str, payload: object) -> None:
        # asyncpg calls this synchronously: queue the id and let one named task reload it.
        self._dirty.add(str(payload))
        if self._reload_task is None or self._reload_task.done():
            self._reload_task = asyncio.create_task(
                self._reload_dirty(), name=f"subscription-cache-reload-{self._service}"
            )

    async def _reload_dirty(self) -> None:
        while self._dirty:
            async with self._lock:
                conn = self._conn
                if conn is None or not self._connected or not self._dirty:
                    # Nothing left, or the reload after reconnecting reads these rows too.
                    return
                subscription_id = self._dirty.pop()
                try:
                    sub = await load_one(conn, subscription_id, self._box)
                except _CONNECTION_ERRORS as exc:
                    self._mark_lost(f"{type(exc).__name__}: {exc}")
                    return
                except (ConfigurationError, ValueError) as exc:
                    # A secret that does not open: keep what we had, and say so loudly.
                    log.error(
                        "subscription_unreadable",
                        subscription_id=subscription_id,
                        error=f"{type(exc).__name__}: {exc}",
                    )
                    continue
                self._apply(subscription_id, sub)
            log.debug(
                "subscription_reloaded", subscription_id=subscription_id, found=sub is not None
            )
