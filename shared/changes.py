"""The one follower of database changes: a LISTEN connection, its round trips, its reconnects.

Every cache of a table (fanout's routes, the sender's subscriptions, ingest's event-type
catalogue) is kept fresh the same way. One dedicated connection LISTENs on the channels its
caches follow (the triggers of migration 0001 notify `hookline_subscriptions` with the
changed row's id and `hookline_event_types` with the changed name) and carries the caches'
reads, one at a time under a lock. Reading on the listening connection is what keeps a cache
honest: Postgres sends a notification before the answer of any query that started after the
change was committed, so a cache drops what the change made stale before it stores what a
later query read.

When the connection is lost, the follower reconnects with a capped backoff and calls every
channel's `on_reset` (its cache forgets or reloads everything: notifications sent meanwhile
are gone); it reports not ready until then.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg

from shared.errors import DATABASE_ERRORS, StorageUnavailable
from shared.logging import get_logger
from shared.supervision import spawn

SUBSCRIPTIONS = "hookline_subscriptions"
"""Notified with the id of each subscription written (migration 0001)."""
EVENT_TYPES = "hookline_event_types"
"""Notified with the name of each event type written (migration 0001)."""

_BACKOFF_FIRST_S = 0.1
_BACKOFF_MAX_S = 5.0
_KEEPALIVE_S = 5.0
"""How often the idle LISTEN connection is probed, so a silently dead one is noticed."""
QUERY_TIMEOUT_S = 10.0
_SESSION = {"plan_cache_mode": "force_generic_plan"}
"""The caches' reads are few prepared statements run thousands of times with small arrays
(a wave of misses). Left to choose, Postgres plans the routes read afresh at every run: on
1,000,000 subscriptions 340-380 us for two keys, against 130-170 us with the one generic
plan (index probes either way; measured on 2 cores)."""

T = TypeVar("T")

log = get_logger("changes")


@dataclass(frozen=True, slots=True)
class Channel:
    """One followed channel: `on_notify(payload)` for each notification, in order;
    `on_reset()` on every (re)connection, before the follower reports ready again."""

    name: str
    on_notify: Callable[[str], None]
    on_reset: Callable[[], None]


class ChangeFollower:
    """LISTENs on `channels` and runs its caches' queries on the same connection."""

    def __init__(self, database_url: str, *, service: str, channels: list[Channel]) -> None:
        self._database_url = database_url
        self._service = service
        self._channels = {channel.name: channel for channel in channels}
        self._conn: asyncpg.Connection | None = None
        self._connected = False
        self._closing = False
        # One query at a time on the one connection (asyncpg allows no more), in order.
        self._lock = asyncio.Lock()
        self._watch_task: asyncio.Task[None] | None = None
        self._sync_task: asyncio.Task[None] | None = None
        self._next_sync: asyncio.Future[None] | None = None
        self._lost = asyncio.Event()

    @property
    def connected(self) -> bool:
        """True while the LISTEN connection is up (changes are being heard)."""
        return self._connected and not self._lost.is_set()

    async def start(self) -> None:
        """Connect and LISTEN. Raises StorageUnavailable when Postgres cannot be reached."""
        try:
            await self._connect()
        except DATABASE_ERRORS as exc:
            await self._drop_connection()
            raise StorageUnavailable(f"cannot listen for {self._names()}: {exc}") from exc
        self._watch_task = spawn(self._watch(), name=f"changes-watch-{self._service}")

    async def close(self) -> None:
        """Stop listening and close the connection."""
        self._closing = True
        tasks = [t for t in (self._watch_task, self._sync_task) if t]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._drop_connection()

    def ready(self) -> bool:
        """True while the LISTEN connection is up and watched."""
        watching = self._watch_task is not None and not self._watch_task.done()
        return self.connected and watching

    async def run(self, query: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run `query` on the listening connection, alone.

        Raises StorageUnavailable while the connection is down or when the query fails for
        want of Postgres (the connection is then reset, and every cache with it).
        """
        async with self._lock:
            conn = self._conn
            if conn is None or not self.connected:
                raise StorageUnavailable(f"the follower of {self._names()} is reconnecting")
            try:
                return await query(conn)
            except DATABASE_ERRORS as exc:
                self._mark_lost(f"{type(exc).__name__}: {exc}")
                raise StorageUnavailable(f"cannot read {self._names()}: {exc}") from exc

    async def sync(self) -> None:
        """Return once every change committed before this call has been notified.

        One round trip on the LISTEN connection, shared by every caller waiting meanwhile:
        Postgres sends the notifications of earlier commits before it answers.

        Raises StorageUnavailable while the connection is down, and when the round trip
        failed: notifications may then be missing. The caller retries later.
        """
        if not self.ready():
            raise StorageUnavailable(f"the follower of {self._names()} is reconnecting")
        waiter = self._next_sync
        if waiter is None:
            waiter = self._next_sync = asyncio.get_running_loop().create_future()
            if self._sync_task is None or self._sync_task.done():
                self._sync_task = asyncio.create_task(
                    self._run_syncs(), name=f"changes-sync-{self._service}"
                )
        await asyncio.shield(waiter)
        if not self.ready():
            raise StorageUnavailable(f"the follower of {self._names()} lost its connection")

    def _names(self) -> str:
        return ", ".join(self._channels)

    async def _run_syncs(self) -> None:
        # Callers arriving while a round trip is out wait for the next one: the round trip
        # they need must start after they asked.
        while (waiter := self._next_sync) is not None:
            self._next_sync = None
            try:
                await self._probe()
            finally:
                # Even after a failed round trip: callers then see `ready()` false.
                waiter.set_result(None)

    # The connection

    async def _connect(self) -> None:
        async with self._lock:
            conn = await asyncpg.connect(
                self._database_url, timeout=QUERY_TIMEOUT_S, server_settings=_SESSION
            )
            self._conn = conn
            conn.add_termination_listener(self._on_terminated)
            for name in self._channels:
                await conn.add_listener(name, self._on_notify)
            # Whatever was cached may have changed unheard while not listening.
            for channel in self._channels.values():
                channel.on_reset()
            self._connected = True
            self._lost.clear()
        log.info("change_follower_connected", service=self._service, channels=self._names())

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        self._connected = False
        if conn is None or conn.is_closed():
            return
        conn.remove_termination_listener(self._on_terminated)
        try:
            await asyncio.wait_for(conn.close(), timeout=2.0)
        except DATABASE_ERRORS:
            conn.terminate()

    def _on_terminated(self, conn: Any) -> None:
        if conn is self._conn and not self._closing:
            self._mark_lost("connection closed")

    def _mark_lost(self, reason: str) -> None:
        if not self._lost.is_set():
            log.warning(
                "change_follower_lost", service=self._service, channels=self._names(), reason=reason
            )
        self._connected = False
        self._lost.set()

    async def _watch(self) -> None:
        """Probe the connection while it is up; reconnect when it is lost."""
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
                await conn.execute("SELECT 1", timeout=QUERY_TIMEOUT_S)
            except DATABASE_ERRORS as exc:
                self._mark_lost(f"{type(exc).__name__}: {exc}")

    async def _reconnect(self) -> None:
        delay_s = _BACKOFF_FIRST_S
        while True:
            await self._drop_connection()
            try:
                await self._connect()
            except DATABASE_ERRORS as exc:
                log.warning(
                    "change_follower_reconnect_failed",
                    service=self._service,
                    error=f"{type(exc).__name__}: {exc}",
                    retry_in_s=delay_s,
                )
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, _BACKOFF_MAX_S)
                continue
            log.info("change_follower_reconnected", service=self._service)
            return

    def _on_notify(self, conn: Any, pid: int, channel: str, payload: object) -> None:
        followed = self._channels.get(channel)
        if conn is self._conn and followed is not None:
            followed.on_notify(str(payload))
