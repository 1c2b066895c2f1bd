"""The one consumer runtime of Hookline: consume a queue, settle each message, keep consuming.

Used by ingest (`{ns}.ingest`), fanout (`{ns}.fanout`) and the sender (`{ns}.deliveries`).
A `Consumer` owns its own connection and channel and restores them itself after any loss:
the broker closing the connection (`rabbitmqctl close_connection`, a node restart, a network
cut), a channel error, or the broker cancelling the consumer (its queue deleted). It then
connects again with backoff, for as long as the process lives, declares its queue again
(idempotent) and consumes again. `consuming` is the truth readiness reports.

Why not aio-pika's robust channel and queue: they restore only what was declared through
them (`get_queue(..., ensure=False)` was silently never restored), report failed restores at
debug level, and expose no "is consuming" state. Messages are consumed on the channel's
aiormq underlay and handed over as `shared.inbound.Inbound` (no aio-pika message object and
second task per message: see that module).

The ack policy, in one place (`_settle`), like aio-pika's `ProcessContext`:
- the handler returns: the message is acked (batched, `shared.acks.BatchAcker`);
- it raises an outage (`TRANSIENT`: Postgres or RabbitMQ unavailable): the message stays in
  hand, the consumer pauses (no other message reaches a handler) and the handler is called
  again after a backoff, until it succeeds or the channel is lost (the broker then hands the
  message out again). A dependency outage therefore never requeues: no quorum delivery limit
  is spent on it;
- it raises anything else (a bug): logged, and the message is nacked back after a pause; on
  a quorum queue the delivery limit then moves it to a rejected or dead queue.
A handler that settles its messages itself (`settles=False`: the sender's worker, whose
batch messages need their own rules) gets the same acker and only the rest of the runtime.

Shutdown (`stop`): cancel the consumer, let handlers in flight finish within the grace,
cancel the rest (left unacked: the broker delivers them again), send the last acks, close.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection
from aiormq.abc import DeliveredMessage

from shared import metrics, supervision
from shared.acks import BatchAcker, Ticket
from shared.amqp import (
    CONNECT_TIMEOUT_S,
    RECONNECT_FIRST_S,
    RECONNECT_MAX_S,
    QueueTypeMismatch,
    connection_name,
    declare,
    is_blocked,
)
from shared.batching import WriterClosed
from shared.errors import TRANSIENT_ERRORS
from shared.inbound import Inbound
from shared.logging import get_logger
from shared.runtime import drain_tasks
from shared.settings import Settings
from shared.topology import Queue

log = get_logger("consuming")

Handler = Callable[[Inbound], Awaitable[None]]
Gate = Callable[[], bool]
"""True while the consumer may hand messages to its handler (False: the broker blocks the
publishes the handler would make)."""

TRANSIENT: tuple[type[BaseException], ...] = (*TRANSIENT_ERRORS, WriterClosed)
HOLD_FIRST_S = 0.2
HOLD_MAX_S = 5.0
NACK_PAUSE_S = 1.0
GATE_POLL_S = 0.1
_LOSSES: tuple[type[BaseException], ...] = (
    *TRANSIENT_ERRORS,
    aiormq.exceptions.AMQPError,
    RuntimeError,  # aio-pika's ChannelInvalidStateError on a channel closing under it
)
_STEADY_S = 30.0
"""Consuming this long resets the reconnect backoff to its first step."""


class Consumer:
    """Consumes one queue until `stop()`, restoring itself after every outage."""

    def __init__(
        self,
        settings: Settings,
        name: str,
        queue: Queue,
        handler: Handler,
        *,
        prefetch: int,
        settles: bool = True,
        gate: Gate | None = None,
    ) -> None:
        self._settings = settings
        self.name = name
        self._queue = queue
        self._handler = handler
        self._prefetch = prefetch
        self._settles = settles
        self._gate = gate
        self.acker = BatchAcker(name=f"{name}-acks")
        self._inflight: set[asyncio.Task[object]] = set()
        self._stopping = asyncio.Event()
        self._lost = asyncio.Event()
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._tag: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._holding = 0
        self._resume = asyncio.Event()
        self._resume.set()
        self._up = asyncio.Event()
        self.restores = 0
        """How many times consuming was restored after a loss."""
        self._consumed_before = False
        self._generation = 0
        """Which connection is the current one (callbacks of older ones are ignored)."""
        self._lost_reason = "channel or connection closed"
        self._restored = metrics.CONSUMER_RESTORES.labels(name)

    async def start(self) -> None:
        """Start consuming; returns once consuming for the first time (waits for the broker).

        Raises QueueTypeMismatch when the queue exists with another type.
        """
        self.acker.start()
        self._task = supervision.spawn(self._run(), name=f"consumer-{self.name}")
        first = asyncio.create_task(self._wait_consuming())
        await asyncio.wait({first, self._task}, return_when=asyncio.FIRST_COMPLETED)
        first.cancel()
        if self._task.done():
            self._task.result()  # raises what stopped it

    async def _wait_consuming(self) -> None:
        await self._up.wait()

    @property
    def consuming(self) -> bool:
        """True while the consumer holds an open channel with its consumer registered."""
        return self._up.is_set()

    @consuming.setter
    def consuming(self, value: bool) -> None:
        if value:
            self._up.set()
        else:
            self._up.clear()

    async def stop_consuming(self) -> None:
        """Cancel the consumer: no new message arrives; those in hand carry on."""
        self._stopping.set()
        self._resume.set()
        channel, tag = self._channel, self._tag
        if channel is not None and tag is not None and not channel.is_closed:
            with contextlib.suppress(Exception):
                underlay = await asyncio.wait_for(channel.get_underlay_channel(), 1.0)
                await asyncio.wait_for(underlay.basic_cancel(tag), 2.0)
        self.consuming = False

    async def stop(self, grace_s: float) -> None:
        """Stop taking messages, finish those in hand within `grace_s`, ack, close."""
        await self.stop_consuming()
        await asyncio.sleep(0)  # let handler tasks created just before the cancel register
        cancelled = await drain_tasks(self._inflight, grace_s)
        if cancelled:
            log.warning("consumer_drain_timed_out", consumer=self.name, cancelled=cancelled)
        await self.acker.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._close_connection()

    async def _run(self) -> None:
        delay_s = RECONNECT_FIRST_S
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                await self._consume_until_lost()
            except QueueTypeMismatch:
                raise
            except _LOSSES as exc:
                log.warning(
                    "consumer_lost",
                    consumer=self.name,
                    queue=self._queue.name,
                    error=f"{type(exc).__name__}: {exc}",
                    retry_in_s=delay_s,
                )
            finally:
                self.consuming = False
                await self._close_connection()
            if self._stopping.is_set():
                return
            if time.monotonic() - started > _STEADY_S:
                delay_s = RECONNECT_FIRST_S
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay_s)
            delay_s = min(delay_s * 2, RECONNECT_MAX_S)

    async def _consume_until_lost(self) -> None:
        """Connect, declare, consume, and return (or raise) once any of it is lost."""
        self._lost.clear()
        self._generation += 1
        lost = functools.partial(self._on_closed, self._generation)
        url = self._settings.amqp_url.get_secret_value()
        connection = await aio_pika.connect(
            url,
            client_properties={"connection_name": connection_name(self._settings, self.name)},
            timeout=CONNECT_TIMEOUT_S,
        )
        self._connection = connection
        connection.close_callbacks.add(lost)
        channel = await connection.channel(publisher_confirms=False)
        self._channel = channel
        channel.close_callbacks.add(lost)
        await channel.set_qos(prefetch_count=self._prefetch)
        await declare(channel, [], [self._queue])
        underlay = await channel.get_underlay_channel()
        underlay.on_consumer_cancel_callbacks.add(
            functools.partial(self._on_cancelled, self._generation)
        )
        consume_ok = await underlay.basic_consume(self._queue.name, self._on_delivered)
        self._tag = consume_ok.consumer_tag
        if self._consumed_before:
            self.restores += 1
            self._restored.inc()
            log.info("consumer_restored", consumer=self.name, queue=self._queue.name)
        self._consumed_before = True
        self.consuming = True
        await self._lost.wait()
        raise ConnectionError(self._lost_reason)

    def _on_closed(self, generation: int, _: object, exc: BaseException | None = None) -> None:
        if generation != self._generation:
            return  # a connection given up on before; its close says nothing of the current one
        self.consuming = False
        if exc is not None:
            self._lost_reason = f"{type(exc).__name__}: {exc}"
        self._lost.set()

    def _on_cancelled(self, generation: int, frame: object) -> None:
        # The broker cancelled the consumer: its queue was deleted (or its node lost).
        if generation != self._generation:
            return
        self.consuming = False
        self._lost_reason = "consumer cancelled by the broker"
        self._lost.set()

    async def _close_connection(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and not connection.is_closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), 5.0)

    async def _on_delivered(self, delivered: DeliveredMessage) -> None:
        # aiormq runs this in a task of its own per message.
        await self._on_message(Inbound(delivered))

    async def _on_message(self, message: Inbound) -> None:
        ticket = self.acker.received(message)  # before anything awaits: consume order
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
        await self._wait_gate()
        if message.channel.is_closed:
            # Lost while it waited: the broker hands it out again on the new channel.
            self.acker.forget(ticket)
            return
        if not self._settles:
            await self._handler(message)
            return
        await self._settle(message, ticket)

    async def _wait_gate(self) -> None:
        """Hold a new message while another is held for an outage, or while the gate is
        shut (the broker blocks our publishes): it waits unacked in the prefetch window."""
        while not self._stopping.is_set():
            if self._gate is not None and not self._gate():
                await asyncio.sleep(GATE_POLL_S)
                continue
            if not self._resume.is_set():
                await self._resume.wait()
                continue
            return

    async def _settle(self, message: Inbound, ticket: Ticket) -> None:
        """The ack policy (see the module's docstring)."""
        delay_s = HOLD_FIRST_S
        while True:
            try:
                await self._handler(message)
            except TRANSIENT as exc:
                if self._stopping.is_set() or message.channel.is_closed:
                    # The broker hands it out again; nothing was acked.
                    self.acker.forget(ticket)
                    return
                await self._hold(message, exc, delay_s)
                delay_s = min(delay_s * 2, HOLD_MAX_S)
                continue
            except Exception as exc:
                await self._nack(message, ticket, exc)
                return
            self.acker.finish(ticket)
            return

    async def _hold(self, message: Inbound, exc: BaseException, delay_s: float) -> None:
        # Warned once per message: an outage holds a whole prefetch window of them.
        emit = log.warning if delay_s == HOLD_FIRST_S else log.debug
        emit(
            "message_held",
            consumer=self.name,
            message_id=message.message_id,
            error=f"{type(exc).__name__}: {exc}",
            retry_in_s=delay_s,
        )
        self._holding += 1
        self._resume.clear()
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay_s)
        finally:
            self._holding -= 1
            if self._holding == 0:
                self._resume.set()

    async def _nack(self, message: Inbound, ticket: Ticket, exc: Exception) -> None:
        log.error(
            "message_handling_failed",
            consumer=self.name,
            message_id=message.message_id,
            error=f"{type(exc).__name__}: {exc}",
            exc_info=exc,
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), NACK_PAUSE_S)
        try:
            await message.nack(requeue=True)
        except Exception as nack_exc:
            log.warning("message_settle_failed", consumer=self.name, error=repr(nack_exc))
        finally:
            # Only once the nack went out (or the channel is gone, and the broker requeues
            # it): an unsettled tag must keep blocking multiple acks meanwhile.
            self.acker.forget(ticket)


def unblocked(connection: AbstractConnection) -> Gate:
    """A gate that shuts while RabbitMQ blocks `connection`'s publishes (a resource alarm):
    a consumer then takes no work it could not pass on, and resumes when the alarm clears."""
    return lambda: not is_blocked(connection)
