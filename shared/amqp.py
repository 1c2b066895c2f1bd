"""RabbitMQ connection, the one idempotent declarer, and confirmed publishing."""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import Sequence
from typing import Any, NamedTuple

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    AbstractQueue,
    AbstractRobustConnection,
)
from aiormq import spec

from shared.errors import BrokerUnavailable, ConfigurationError
from shared.logging import get_logger
from shared.models import DeliveryMessage
from shared.settings import Settings
from shared.topology import Exchange, Queue

log = get_logger("amqp")

JSON_CONTENT_TYPE = "application/json"
PERSISTENT = 2
"""`delivery_mode` of a persistent message, for `spec.Basic.Properties`."""

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


def json_message(
    body: bytes,
    *,
    headers: dict[str, Any] | None = None,
    message_id: str | None = None,
    expiration: float | None = None,
) -> aio_pika.Message:
    """A persistent JSON message."""
    return aio_pika.Message(
        body,
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        headers=headers or {},
        message_id=message_id,
        expiration=expiration,
    )


def delivery_json_message(
    msg: DeliveryMessage, *, extra_headers: dict[str, Any] | None = None
) -> aio_pika.Message:
    """A persistent delivery message as the sender consumes it: ids in basic properties
    (`DeliveryMessage.properties`), `extra_headers` added to its header table."""
    properties = msg.properties()
    if extra_headers:
        properties["headers"].update(extra_headers)
    return aio_pika.Message(
        msg.body,
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        **properties,
    )


def delivery_properties(
    msg: DeliveryMessage, *, extra_headers: dict[str, Any] | None = None
) -> spec.Basic.Properties:
    """`delivery_json_message`'s properties for `publish_burst`: the same message, without
    building an aio-pika `Message` on the way."""
    properties = msg.properties()
    headers = properties["headers"]
    if extra_headers:
        headers.update(extra_headers)
    return spec.Basic.Properties(
        content_type=JSON_CONTENT_TYPE,
        delivery_mode=PERSISTENT,
        headers=headers,
        message_id=properties["message_id"],
        correlation_id=properties["correlation_id"],
        message_type=properties["type"],
        app_id=properties["app_id"],
    )


PUBLISH_TIMEOUT_S = 30.0
"""How long a confirmed publish may wait for its confirm before it counts as failed."""


async def publish_confirmed(
    exchange: AbstractExchange,
    message: aio_pika.Message,
    routing_key: str,
    *,
    timeout_s: float = PUBLISH_TIMEOUT_S,
) -> None:
    """Publish `message` as mandatory on a channel with publisher confirms; return once the
    broker confirmed it was routed to a queue.

    Raises BrokerUnavailable when the broker returned it (no queue bound: deleted by hand)
    or did not confirm it, TimeoutError after `timeout_s`, or the AMQP error. On a channel
    opened with `on_return_raises=True` a return raises aiormq's PublishError instead; both
    are broker failures to the caller.

    A message without a `message_id` is given a unique one first, for the reason in
    `_ensure_message_id`.
    """
    if not message.message_id:
        message.message_id = _unique_message_id()
    result = await exchange.publish(message, routing_key, mandatory=True, timeout=timeout_s)
    if not isinstance(result, spec.Basic.Ack):
        raise BrokerUnavailable(
            f"publish to {exchange.name or 'default exchange'}/{routing_key} not confirmed: "
            f"{type(result).__name__}"
        )


class Outgoing(NamedTuple):
    """One message of a burst; `exchange` None: the burst's own."""

    body: bytes
    routing_key: str
    properties: spec.Basic.Properties
    exchange: str | None = None


async def publish_burst(
    channel: AbstractChannel,
    exchange: str,
    messages: Sequence[Outgoing | tuple[bytes, str, spec.Basic.Properties]],
) -> list[BaseException | None]:
    """Publish (body, routing key, properties) messages at once as mandatory, straight on
    aiormq (no aio-pika `Message` and no task per message), and await all their confirms.
    An `Outgoing` may name another exchange than the burst's (a retry queue is reached
    through the default exchange, "").

    Every confirmed publish of Hookline goes through here: the hot paths (ingest's events,
    fanout's deliveries, the sender's retries) directly, single messages through
    `publish_confirmed`.

    The hot-path alternative to `publish_confirmed`; the channel needs publisher confirms.
    Returns, per message, None once confirmed, else why not: the exception, or
    BrokerUnavailable for a nack or return. Raises only while getting the channel (it waits
    for a reconnecting robust channel): nothing was published then. Put the burst under
    one deadline (`asyncio.timeout`) rather than one per message; a deadline cancels the
    whole burst, and which of its messages went out is then unknown.

    A message whose properties have no `message_id` is published with a unique one (on a
    copy of the properties: the caller's are left alone).
    """
    ready = [(m[0], m[1], _ensure_message_id(m[2]), _exchange_of(m, exchange)) for m in messages]
    underlay = await channel.get_underlay_channel()
    results = await asyncio.gather(
        *(
            underlay.basic_publish(
                body, exchange=target, routing_key=key, properties=props, mandatory=True
            )
            for body, key, props, target in ready
        ),
        return_exceptions=True,
    )
    return [
        _confirm_outcome(target, result)
        for (_, _, _, target), result in zip(ready, results, strict=True)
    ]


def _exchange_of(message: Outgoing | tuple[bytes, str, spec.Basic.Properties], default: str) -> str:
    if isinstance(message, Outgoing) and message.exchange is not None:
        return message.exchange
    return default


def _unique_message_id() -> str:
    return uuid.uuid4().hex


def _ensure_message_id(props: spec.Basic.Properties) -> spec.Basic.Properties:
    """`props` with a `message_id`: aiormq matches a basic.return to its publish by it, and
    with none the return is only logged and the following ack counts as a confirm, so a
    mandatory message that no queue took would be dropped silently. Ids already set are kept
    (the delivery and event ids receivers and tools rely on)."""
    if props.message_id:
        return props
    props = copy.copy(props)
    props.message_id = _unique_message_id()
    return props


def _confirm_outcome(exchange: str, result: object) -> BaseException | None:
    if isinstance(result, spec.Basic.Ack):
        return None
    if isinstance(result, BaseException):
        return result
    return BrokerUnavailable(f"RabbitMQ did not confirm a publish to {exchange}: {result!r}")
