"""`hookline-outbox relay`: publish committed outbox rows to Hookline, then mark them.

Each round takes up to `batch_size` unpublished rows `FOR UPDATE SKIP LOCKED` in one
transaction, publishes them with pipelined confirms, marks the confirmed ones and commits.
Replicas therefore never publish the same row at once, and a relay that dies before its
commit leaves its rows unmarked and unlocked: another round sends them again with the
same idempotency key, which Hookline's ingest stores and delivers once.

The relay sleeps on `LISTEN hookline_outbox` (the insert function notifies on commit) and
polls every `poll_interval_s` besides, in case a notification was missed while it was
reconnecting. Published rows are deleted once older than `retention_s`. SIGTERM finishes
the round in hand and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import time
from dataclasses import dataclass

import asyncpg

from hookline_client.envelope import Envelope
from hookline_client.errors import PublishError
from hookline_client.notifier import AsyncNotifier
from hookline_client.outbox.metrics import RelayMetrics
from hookline_client.outbox.sql import queries

CHANNEL = "hookline_outbox"
CRASH_AFTER_CONFIRM_ENV = "HOOKLINE_OUTBOX_TEST_CRASH_AFTER_CONFIRM"
"""Test only: when set to 1, the relay SIGKILLs itself after a confirm, before the mark."""
_PURGE_EVERY_S = 60.0
_PURGE_ROWS = 10_000
_STATS_EVERY_S = 2.0
_BACKOFF_FIRST_S = 0.5
_BACKOFF_MAX_S = 10.0

log = logging.getLogger("hookline_client.outbox.relay")


@dataclass(frozen=True)
class RelayConfig:
    """What one relay needs; durations in seconds."""

    database_url: str
    amqp_url: str
    namespace: str = "hookline"
    batch_size: int = 500
    poll_interval_s: float = 10.0
    retention_s: float = 24 * 3600.0
    publish_timeout_s: float = 10.0


def body_of(row: asyncpg.Record) -> Envelope:
    """The ingest envelope of an outbox row; `data` is the row's jsonb text, used as is."""
    head = {"type": row["type"], "id": row["idempotency_key"]}
    if row["tenant_id"] is not None:
        head["tenant_id"] = row["tenant_id"]
    text = json.dumps(head, ensure_ascii=False, separators=(",", ":"))
    body = f'{text[:-1]},"data":{row["data"]}}}'.encode()
    return Envelope(row["idempotency_key"], row["type"], body)


class Relay:
    """One relay process's loop; `run(stop)` until `stop` is set."""

    def __init__(self, config: RelayConfig, metrics: RelayMetrics | None = None) -> None:
        self.config = config
        self.metrics = metrics or RelayMetrics()
        self._wake = asyncio.Event()
        self._next_purge = 0.0
        self._next_stats = 0.0
        self._crash_after_confirm = os.environ.get(CRASH_AFTER_CONFIRM_ENV) == "1"

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until `stop` is set; reconnects to Postgres and RabbitMQ as often as needed."""
        name = f"hookline-outbox-relay {socket.gethostname()}:{os.getpid()}"
        notifier = AsyncNotifier(
            self.config.amqp_url,
            self.config.namespace,
            timeout_s=self.config.publish_timeout_s,
            connection_name=name,
        )
        backoff_s = _BACKOFF_FIRST_S
        try:
            while not stop.is_set():
                try:
                    await self._serve(notifier, stop)
                    backoff_s = _BACKOFF_FIRST_S
                except asyncpg.UndefinedTableError as exc:
                    log.error("outbox_not_migrated: %s (run `hookline-outbox migrate`)", exc)
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    log.warning("outbox_database_unavailable: %s", exc)
                except PublishError as exc:
                    self.metrics.failures.labels(exc.reason).inc(len(exc.failed))
                    log.warning("outbox_publish_failed: %s", exc)
                await _sleep_unless(stop, backoff_s)
                backoff_s = min(backoff_s * 2, _BACKOFF_MAX_S)
        finally:
            await notifier.close()

    async def _serve(self, notifier: AsyncNotifier, stop: asyncio.Event) -> None:
        conn = await asyncpg.connect(self.config.database_url, timeout=10)
        try:
            conn.add_termination_listener(lambda _: self._wake.set())
            await conn.add_listener(CHANNEL, lambda *_: self._wake.set())
            log.info("outbox_relay_listening namespace=%s", self.config.namespace)
            while not stop.is_set() and not conn.is_closed():
                self._wake.clear()
                try:
                    published = await self.relay_once(conn, notifier)
                finally:
                    # Also when publishing fails: the backlog gauges matter most then.
                    await self._housekeeping(conn)
                if published >= self.config.batch_size:
                    continue
                await _wait_any(self._wake, stop, self.config.poll_interval_s)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2)

    async def relay_once(self, conn: asyncpg.Connection, notifier: AsyncNotifier) -> int:
        """Publish and mark one batch; the number of rows published (0 when none waited).

        Raises PublishError after marking the rows that were confirmed.
        """
        async with conn.transaction():
            rows = await conn.fetch(queries["claim"], self.config.batch_size)
            if not rows:
                return 0
            envelopes = [body_of(row) for row in rows]
            failure: PublishError | None = None
            try:
                await notifier.publish_envelopes(envelopes)
                confirmed = [row["seq"] for row in rows]
            except PublishError as exc:
                failure = exc
                done = set(exc.confirmed)
                confirmed = [row["seq"] for row in rows if row["idempotency_key"] in done]
            if self._crash_after_confirm and confirmed:
                os.kill(os.getpid(), signal.SIGKILL)
            if confirmed:
                await conn.execute(queries["mark"], confirmed)
        self.metrics.published.inc(len(confirmed))
        if failure is not None:
            raise failure
        return len(confirmed)

    async def _housekeeping(self, conn: asyncpg.Connection) -> None:
        now = time.monotonic()
        if now >= self._next_purge:
            self._next_purge = now + _PURGE_EVERY_S
            status = await conn.execute(
                queries["purge"], float(self.config.retention_s), _PURGE_ROWS
            )
            removed = int(status.split()[-1])
            if removed:
                log.info("outbox_rows_purged rows=%d", removed)
                self._next_purge = now  # more may be left: purge again next round
        if now >= self._next_stats:
            self._next_stats = now + _STATS_EVERY_S
            row = await conn.fetchrow(queries["stats"])
            if row is not None:
                self.metrics.pending.set(row["pending"])
                self.metrics.oldest_age.set(row["oldest_s"])


async def _wait_any(wake: asyncio.Event, stop: asyncio.Event, timeout_s: float) -> None:
    waits = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stop.wait())]
    try:
        await asyncio.wait(waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waits:
            task.cancel()
        await asyncio.gather(*waits, return_exceptions=True)


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
