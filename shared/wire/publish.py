"""The publish path: every publish of Hookline goes through `publish_burst` (many at once,
the hot paths) or `publish_confirmed` (one aio-pika message), mandatory and awaited until the
broker confirmed it. What goes in each message's properties: `shared.wire.properties`."""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import Sequence
from typing import NamedTuple

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange
from aiormq import spec

from shared.errors import BrokerUnavailable

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
