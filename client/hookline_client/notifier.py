"""`AsyncNotifier`: hand events to Hookline over AMQP, returning once RabbitMQ confirmed them.

One connection and one confirmed channel are opened on first use and reused by every call,
concurrent ones included. Messages are persistent and mandatory, so an event that no queue
would take fails instead of being confirmed into nothing. A lost connection is opened again
by the next call; a call that meets a broken connection sends its events again on a new one
within its bound: the idempotency key makes that safe, since ingest stores and delivers an
event sent twice with the same key once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

import aio_pika
import aiormq.exceptions
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange

from hookline_client.envelope import MAX_PAYLOAD_BYTES, Envelope, Event, envelope
from hookline_client.errors import PublishError, Reason

log = logging.getLogger("hookline_client")

DEFAULT_TIMEOUT_S = 10.0
IN_FLIGHT_MAX = 1000
"""Publishes of one `notify_many` awaiting their confirm at once."""
_RETRY_FIRST_S = 0.1
_RETRY_MAX_S = 2.0
_BROKEN = (
    aiormq.exceptions.AMQPConnectionError,
    aiormq.exceptions.ChannelInvalidStateError,
    ConnectionError,
    OSError,
    RuntimeError,  # aiormq's "<Connection ...> closed"
)
"""Failures of the connection itself: the events are sent again on a new one."""


class AsyncNotifier:
    """Publishes events to `{namespace}.ingest` with publisher confirms.

    `timeout_s` bounds each call from start to confirm, reconnecting included. Use it as an
    async context manager, or call `connect()` and `close()`; without `connect()` the
    connection opens on the first call. Safe for concurrent use within one event loop.
    """

    def __init__(
        self,
        amqp_url: str,
        namespace: str = "hookline",
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_payload: int = MAX_PAYLOAD_BYTES,
        connection_name: str = "hookline-client",
    ) -> None:
        self._amqp_url = amqp_url
        self.exchange_name = f"{namespace}.ingest"
        self.timeout_s = timeout_s
        self.max_payload = max_payload
        self._connection_name = connection_name
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._lock = asyncio.Lock()
        self._closed = False

    async def __aenter__(self) -> AsyncNotifier:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def connect(self) -> None:
        """Open the connection now; raises PublishError (unreachable, unroutable) on failure."""
        loop = asyncio.get_running_loop()
        await self._ready_exchange(loop.time() + self.timeout_s)

    async def close(self) -> None:
        """Close the connection; later calls raise RuntimeError."""
        self._closed = True
        await self._drop()

    async def notify(
        self,
        type: str,
        data: Mapping[str, Any] | None = None,
        *,
        id: str | None = None,
        tenant_id: str | None = None,
    ) -> str:
        """Publish one event and wait for its confirm; returns its idempotency key.

        The key is `id`, or a new unique one. Raises ValueError (before sending) for an event
        ingest would refuse, PublishError when it was not confirmed.
        """
        checked = envelope(type, data, id=id, tenant_id=tenant_id, max_payload=self.max_payload)
        return (await self.publish_envelopes([checked]))[0]

    async def notify_many(self, events: Iterable[Event | Mapping[str, Any]]) -> list[str]:
        """Publish a burst with pipelined confirms; returns the keys in the order given.

        Every event is checked before any is sent (ValueError naming its position). When
        some are not confirmed, raises PublishError for the first of them in order, with
        `confirmed` and `failed` listing the keys of each kind.
        """
        checked = []
        for position, item in enumerate(events):
            try:
                event = item if isinstance(item, Event) else Event(**item)
                checked.append(
                    envelope(
                        event.type,
                        event.data,
                        id=event.id,
                        tenant_id=event.tenant_id,
                        max_payload=self.max_payload,
                    )
                )
            except (TypeError, ValueError) as exc:
                raise ValueError(f"event {position}: {exc}") from None
        return await self.publish_envelopes(checked)

    async def publish_envelopes(self, envelopes: Sequence[Envelope]) -> list[str]:
        """Publish checked envelopes (see `notify_many`); for tools built on this client."""
        if self._closed:
            raise RuntimeError("this notifier is closed")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        outcome: dict[int, BaseException | None] = {}
        todo = list(range(len(envelopes)))
        while todo:
            try:
                exchange = await self._ready_exchange(deadline, envelopes[todo[0]].key)
                connection = self._connection
            except PublishError as exc:
                outcome.update((i, exc) for i in todo)
                break
            window = asyncio.Semaphore(IN_FLIGHT_MAX)
            results = await asyncio.gather(
                *(self._publish_one(exchange, envelopes[i], deadline, window) for i in todo),
                return_exceptions=True,
            )
            broken = [i for i, r in zip(todo, results, strict=True) if isinstance(r, _BROKEN)]
            outcome.update((i, r) for i, r in zip(todo, results, strict=True) if i not in broken)
            todo = broken
            if broken:
                log.warning("hookline_connection_lost", extra={"events": len(broken)})
                await self._drop(only=connection)
        return _keys_or_raise(envelopes, outcome, self.exchange_name)

    async def _publish_one(
        self,
        exchange: AbstractExchange,
        item: Envelope,
        deadline: float,
        window: asyncio.Semaphore,
    ) -> None:
        message = aio_pika.Message(
            item.body,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=item.key,
            app_id="hookline-client",
        )
        async with window:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError
            await exchange.publish(message, item.type, mandatory=True, timeout=remaining)

    async def _ready_exchange(self, deadline: float, key: str | None = None) -> AbstractExchange:
        """The exchange on an open channel, connecting (again) until `deadline`."""
        async with self._lock:
            if self._closed:
                raise RuntimeError("this notifier is closed")
            if self._exchange is not None and self._channel is not None:
                connection = self._connection
                if not self._channel.is_closed and connection and not connection.is_closed:
                    return self._exchange
            return await self._open(deadline, key)

    async def _open(self, deadline: float, key: str | None) -> AbstractExchange:
        loop = asyncio.get_running_loop()
        pause_s = _RETRY_FIRST_S
        while True:
            try:
                return await asyncio.wait_for(self._open_once(), max(0.01, deadline - loop.time()))
            except aiormq.exceptions.ChannelNotFoundEntity:
                raise PublishError(
                    "unroutable",
                    f"exchange {self.exchange_name} does not exist: is Hookline's ingest"
                    " running in this namespace?",
                    key=key,
                ) from None
            except (*_BROKEN, TimeoutError, aiormq.exceptions.AMQPError) as exc:
                await self._drop()
                await asyncio.sleep(0)  # lets a failed connection's close callbacks run
                if loop.time() + pause_s >= deadline:
                    raise PublishError(
                        "unreachable",
                        f"cannot reach the broker within {self.timeout_s:g}s: {exc!r}",
                        key=key,
                    ) from exc
                await asyncio.sleep(pause_s)
                pause_s = min(pause_s * 2, _RETRY_MAX_S)

    async def _open_once(self) -> AbstractExchange:
        if self._connection is None or self._connection.is_closed:
            # Kept before it connects, so that `_drop` closes a failed attempt too.
            self._connection = aio_pika.Connection(
                aio_pika.connection.make_url(self._amqp_url),
                client_properties={"connection_name": self._connection_name},
            )
            await self._connection.connect()
        self._channel = await self._connection.channel(
            publisher_confirms=True, on_return_raises=True
        )
        # Passive: a missing exchange is an error now, not a closed channel at publish.
        self._exchange = await self._channel.get_exchange(self.exchange_name, ensure=True)
        return self._exchange

    async def _drop(self, only: AbstractConnection | None = None) -> None:
        """Forget and close the connection; with `only`, just when it is still that one
        (a concurrent call may already have opened the next)."""
        if only is not None and self._connection is not only:
            return
        connection, self._connection = self._connection, None
        self._channel = self._exchange = None
        if connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), 2.0)


def _failure(exc: BaseException, exchange: str) -> tuple[Reason, str]:
    """The reason and the words of a publish that failed for good."""
    if isinstance(exc, aiormq.exceptions.PublishError):
        return "unroutable", f"no queue is bound to {exchange} for this type (message returned)"
    if isinstance(exc, aiormq.exceptions.DeliveryError):
        return "nack", "the broker refused the message (basic.nack)"
    if isinstance(exc, TimeoutError):
        return "timeout", "no confirm from the broker in time"
    if isinstance(exc, aiormq.exceptions.ChannelNotFoundEntity):
        return "unroutable", f"exchange {exchange} does not exist"
    if isinstance(exc, PublishError):
        return exc.reason, str(exc).partition(": ")[2]
    if isinstance(exc, _BROKEN):
        return "unreachable", f"the connection was lost: {exc!r}"
    return "nack", f"the broker closed the channel: {exc!r}"


def _keys_or_raise(
    envelopes: Sequence[Envelope], outcome: dict[int, BaseException | None], exchange: str
) -> list[str]:
    keys = [e.key for e in envelopes]
    failed = [i for i in range(len(envelopes)) if outcome.get(i) is not None]
    if not failed:
        return keys
    first = failed[0]
    error = outcome[first]
    assert error is not None
    if isinstance(error, asyncio.CancelledError):
        raise error
    reason, words = _failure(error, exchange)
    where = f"event {envelopes[first].type} (key {keys[first]})"
    if len(envelopes) > 1:
        where += f", {len(failed)} of {len(envelopes)} not confirmed"
    raise PublishError(
        reason,
        f"{where}: {words}",
        key=keys[first],
        confirmed=[k for i, k in enumerate(keys) if outcome.get(i) is None],
        failed=[keys[i] for i in failed],
    ) from error
