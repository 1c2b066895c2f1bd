"""RabbitMQ connection, its blocked state, and the one idempotent declarer (publishing is
`shared.wire.publish`'s)."""

from __future__ import annotations

import asyncio

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    AbstractQueue,
    AbstractRobustConnection,
)

from shared.errors import BrokerUnavailable, ConfigurationError
from shared.logging import get_logger
from shared.settings import Settings
from shared.topology import Exchange, Queue

log = get_logger("amqp")

_EXCHANGE_TYPES = {
    "topic": aio_pika.ExchangeType.TOPIC,
    "direct": aio_pika.ExchangeType.DIRECT,
    "fanout": aio_pika.ExchangeType.FANOUT,
}


CONNECT_TIMEOUT_S = 10.0
RECONNECT_FIRST_S = 0.5
RECONNECT_MAX_S = 10.0
"""Backoff between attempts to reach the broker: doubled from the first up to the max, for
as long as the process lives (its liveness bound tells a supervisor when to give up)."""


def connection_name(settings: Settings, name: str) -> str:
    """What the broker shows for a connection (`rabbitmqctl list_connections name`)."""
    return f"hookline-{settings.namespace}-{name}"


async def connect(settings: Settings, name: str, *, wait: bool = True) -> AbstractRobustConnection:
    """A robust connection for publishing, named for the broker UI; waits for the broker.

    aio-pika's robust connection reconnects by itself after any loss and reopens its channels
    (a channel closed by a channel error too), which is what publisher channels need: every
    publish waits for it within its own deadline. Consumers do not rely on it: see
    `shared.consuming`. At start, an unreachable broker is tried again with backoff for as
    long as it takes (logged as `broker_unreachable`); with `wait=False` (operator commands)
    it raises BrokerUnavailable instead.
    """
    url = settings.amqp_url.get_secret_value()
    delay_s = RECONNECT_FIRST_S
    while True:
        try:
            return await aio_pika.connect_robust(
                url,
                client_properties={"connection_name": connection_name(settings, name)},
                timeout=CONNECT_TIMEOUT_S,
                reconnect_interval=RECONNECT_FIRST_S * 4,
            )
        except (TimeoutError, OSError, aio_pika.exceptions.AMQPError) as exc:
            if not wait:
                raise BrokerUnavailable(f"cannot connect to RabbitMQ: {exc}") from exc
            log.warning("broker_unreachable", connection=name, error=str(exc), retry_in_s=delay_s)
        await asyncio.sleep(delay_s)
        delay_s = min(delay_s * 2, RECONNECT_MAX_S)


def is_blocked(connection: AbstractConnection | None) -> bool:
    """True while RabbitMQ blocks the connection's publishes (a memory or disk alarm:
    `connection.blocked`); aiormq then holds every frame until `connection.unblocked`."""
    transport = getattr(connection, "transport", None)
    underlay = getattr(transport, "connection", None)
    # aiormq keeps the state in a private event that its writer waits on; read only.
    unblocked = getattr(underlay, "_Connection__connection_unblocked", None)
    return isinstance(unblocked, asyncio.Event) and not unblocked.is_set()


class QueueTypeMismatch(ConfigurationError):
    """A queue exists with other arguments (its type) than the topology declares."""


def mismatch_message(queue: Queue, exc: BaseException) -> str:
    wanted = queue.arguments.get("x-queue-type", "classic")
    return (
        f"queue {queue.name} already exists with other arguments than HOOKLINE_QUEUE_TYPE="
        f"{wanted} declares ({exc}). Either set HOOKLINE_QUEUE_TYPE to the type the queues "
        "have, or move the deployment to the new type without losing a message as "
        "docs/reliability.md describes ('Moving from classic to quorum queues': run a second "
        "namespace beside this one and let this one drain, or move each queue's messages "
        "with a shovel while the services are stopped)."
    )


async def declare(
    channel: AbstractChannel, exchanges: list[Exchange], queues: list[Queue]
) -> tuple[dict[str, AbstractExchange], dict[str, AbstractQueue]]:
    """Declare exchanges, durable queues and their bindings; safe to run again and again.

    Raises QueueTypeMismatch when a queue exists with other arguments (RabbitMQ's
    PRECONDITION_FAILED, which also closes the channel): a service must not run then.
    """
    declared_exchanges: dict[str, AbstractExchange] = {}
    for ex in exchanges:
        declared_exchanges[ex.name] = await channel.declare_exchange(
            ex.name, _EXCHANGE_TYPES[ex.type], durable=True
        )
    declared_queues: dict[str, AbstractQueue] = {}
    for q in queues:
        try:
            queue = await channel.declare_queue(q.name, durable=True, arguments=dict(q.arguments))
        except aiormq.exceptions.ChannelPreconditionFailed as exc:
            raise QueueTypeMismatch(mismatch_message(q, exc)) from exc
        for exchange_name, routing_key in q.bindings:
            exchange = declared_exchanges.get(exchange_name) or await channel.declare_exchange(
                exchange_name, passive=True
            )
            await queue.bind(exchange, routing_key)
        declared_queues[q.name] = queue
    return declared_exchanges, declared_queues
