"""The dead queue by hand: what `hookline dead list` and `hookline dead redrive` do.

`list` reads up to `--limit` messages of `{ns}.dead` and puts every one back (nothing is
consumed away). `redrive` sends dead deliveries to the work queue again as a first attempt,
with their `deliveries` row back to `pending`: the row first, then the publish (confirmed),
and the dead message is acked only after that confirm; a crash in between leaves the message
in the dead queue, to be redriven again. Messages not matching `--subscription`, and those
that are not delivery messages at all, stay in the dead queue.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import asyncpg
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from shared.amqp import connect, declare
from shared.logging import get_logger
from shared.settings import Settings
from shared.stores import deliveries
from shared.topology import SEND_ROUTING_KEY, Topology, topology_of
from shared.wire.messages import H_ERROR, DeliveryMessage
from shared.wire.properties import delivery_json_message
from shared.wire.publish import publish_confirmed

log = get_logger("dead")


@dataclass(frozen=True)
class DeadEntry:
    """One dead-lettered message as listed; ids are None when the message was malformed."""

    delivery_id: str | None
    subscription_id: str | None
    event_id: str | None
    attempts: int | None
    error: str

    def line(self) -> str:
        return (
            f"{self.delivery_id or '-'}  subscription={self.subscription_id or '-'}"
            f"  event={self.event_id or '-'}  attempts={self.attempts or '-'}"
            f"  error={self.error}"
        )


@dataclass(frozen=True)
class RedriveReport:
    redriven: list[str]
    """Delivery ids sent to the work queue again."""
    kept: int
    """Messages left in the dead queue (not matching, or not delivery messages)."""


def _entry(message: AbstractIncomingMessage) -> DeadEntry:
    error = str((message.headers or {}).get(H_ERROR, "unknown"))
    try:
        msg = DeliveryMessage.from_message(message)
    except ValueError:
        return DeadEntry(None, None, None, None, error)
    return DeadEntry(msg.delivery_id, msg.subscription_id, msg.event_id, msg.attempt, error)


async def _dead_queue(channel: AbstractChannel, topology: Topology) -> AbstractQueue:
    exchanges, queues = topology.for_sender()
    _, declared = await declare(channel, exchanges, queues)
    return declared[topology.dead_queue.name]


async def list_dead(settings: Settings, limit: int) -> list[DeadEntry]:
    """Up to `limit` dead deliveries, oldest first; every one stays in the dead queue."""
    topology = topology_of(settings)
    connection = await connect(settings, "dead-list", wait=False)
    try:
        channel = await connection.channel()
        queue = await _dead_queue(channel, topology)
        held: list[AbstractIncomingMessage] = []
        while len(held) < limit:
            message = await queue.get(no_ack=False, fail=False)
            if message is None:
                break
            held.append(message)
        entries = [_entry(m) for m in held]
        for message in held:
            await message.nack(requeue=True)
        return entries
    finally:
        await connection.close()


async def redrive(settings: Settings, subscription_id: str | None = None) -> RedriveReport:
    """Send dead deliveries (of one subscription, or all) to the work queue as attempt 1."""
    topology = topology_of(settings)
    connection = await connect(settings, "dead-redrive", wait=False)
    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        queue = await _dead_queue(channel, topology)
        exchange = await channel.get_exchange(topology.deliveries_exchange.name)
        kept: list[AbstractIncomingMessage] = []
        redriven: list[str] = []
        while (message := await queue.get(no_ack=False, fail=False)) is not None:
            try:
                msg = DeliveryMessage.from_message(message)
            except ValueError:
                kept.append(message)
                continue
            if subscription_id is not None and msg.subscription_id != subscription_id:
                kept.append(message)
                continue
            fresh = replace(msg, attempt=1)
            await deliveries.pending_again(conn, fresh.delivery_id)
            # Mandatory: with the work queue gone this raises and the message stays dead.
            await publish_confirmed(exchange, delivery_json_message(fresh), SEND_ROUTING_KEY)
            await message.ack()
            redriven.append(fresh.delivery_id)
            log.info(
                "dead_delivery_redriven",
                delivery_id=fresh.delivery_id,
                subscription_id=fresh.subscription_id,
            )
        for message in kept:
            await message.nack(requeue=True)
        return RedriveReport(redriven, len(kept))
    finally:
        await conn.close()
        await connection.close()
