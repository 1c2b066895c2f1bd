"""Wire format 2: many events (ingest -> fanout) or many deliveries (fanout -> sender) in one
AMQP message, so the broker, the consumers and their acks handle one message per batch
instead of one per event (format 1, one per message, is `shared.wire.messages`; when each
is published: `shared.wire`).

A format 2 message says so in header `H_WIRE` and carries its item count in `H_COUNT`; its
body is an index, a newline, then the bodies:

    {"b":[<length of body 0>, ...],"i":[<item>, ...]}\\n<body 0><body 1>...

An event item is `[event id, type, tenant id or null, accepted at, body number]`; a delivery
item is `[delivery id, event id, subscription id, type, attempt, accepted at, body number]`.
Deliveries of one event share its body. The index is orjson output, which never holds a raw
newline, so the first newline ends it whatever the bodies hold.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import orjson

from shared.wire import messages
from shared.wire.messages import ConsumedMessage, DeliveryMessage, EventMessage

H_WIRE = "x-hookline-wire"
"""Header naming a message's format 2 kind; absent on format 1 messages."""
H_COUNT = "x-hookline-count"
"""Header of a format 2 message: how many items it carries."""
H_FRESH = "x-hookline-fresh"
"""Header of a format 2 deliveries message whose deliveries fanout stored just before it
published them: none can have been published, let alone attempted, before. A sender checks
what was done only for a message without it (or handed out again). Senders that predate it
ignore it and check every message, as before."""
EVENTS = "events.2"
DELIVERIES = "deliveries.2"
CONTENT_TYPE = "application/vnd.hookline.batch"
EVENTS_ROUTING_KEY = "hookline.batch"
"""Routing key of a format 2 events message (fanout's queue takes every key on `{ns}.events`)."""

MAX_ITEMS = 500
"""Items in one message: a sender expands a message whole, within its in-hand budget."""
MAX_BODY_BYTES = 4 * 1024 * 1024
"""Bytes of bodies in one message (a message holds at least one item, whatever its size)."""


def kind_of(headers: Mapping[str, Any] | None) -> str | None:
    """The format 2 kind of a message (`EVENTS` or `DELIVERIES`), None for format 1."""
    if not headers:
        return None
    kind = headers.get(H_WIRE)
    if isinstance(kind, bytes):
        kind = kind.decode(errors="replace")
    return None if kind is None else str(kind)


def count_of(headers: Mapping[str, Any] | None) -> int:
    """Items a format 2 message says it carries (at least 1), read without decoding it."""
    try:
        return max(1, int((headers or {}).get(H_COUNT, 1)))
    except (TypeError, ValueError):
        return 1


def headers_for(kind: str, count: int) -> dict[str, Any]:
    return {H_WIRE: kind, H_COUNT: count}


def is_fresh(headers: Mapping[str, Any] | None) -> bool:
    """Whether a deliveries message says none of its deliveries was published before."""
    return bool((headers or {}).get(H_FRESH))


def _pack(bodies: list[bytes], items: list[list[Any]]) -> bytes:
    index = orjson.dumps({"b": [len(b) for b in bodies], "i": items})
    return b"".join((index, b"\n", *bodies))


def _unpack(body: bytes) -> tuple[list[bytes], list[Any]]:
    """The bodies and items of a format 2 body; ValueError when it is not one."""
    end = body.find(b"\n")
    if end < 0:
        raise ValueError("batch message without an index line")
    try:
        index = orjson.loads(body[:end])
        lengths, items = index["b"], index["i"]
    except (orjson.JSONDecodeError, TypeError, KeyError) as exc:
        raise ValueError(f"batch message index unreadable: {exc}") from exc
    if not isinstance(lengths, list) or not isinstance(items, list) or not items:
        raise ValueError("batch message index lists no items")
    bodies: list[bytes] = []
    offset = end + 1
    for length in lengths:
        if not isinstance(length, int) or length < 0 or offset + length > len(body):
            raise ValueError("batch message bodies do not match its index")
        bodies.append(body[offset : offset + length])
        offset += length
    if offset != len(body):
        raise ValueError("batch message holds bytes its index does not list")
    return bodies, items


def chunks(sizes: Sequence[int]) -> Iterator[range]:
    """Consecutive ranges of item positions, each within MAX_ITEMS and MAX_BODY_BYTES
    (`sizes[i]` is the body bytes item i adds; 0 for one sharing an earlier body)."""
    start, used = 0, 0
    for i, size in enumerate(sizes):
        if i > start and (i - start >= MAX_ITEMS or used + size > MAX_BODY_BYTES):
            yield range(start, i)
            start, used = i, 0
        used += size
    if start < len(sizes):
        yield range(start, len(sizes))


def encode_events(events: Sequence[EventMessage]) -> bytes:
    """One format 2 body carrying `events` (their order kept)."""
    items = [
        [e.event_id, e.event_type, e.tenant_id, e.accepted_at, n] for n, e in enumerate(events)
    ]
    return _pack([e.body for e in events], items)


def decode_events(body: bytes) -> list[EventMessage]:
    """The events of a format 2 `EVENTS` body; ValueError when it is malformed."""
    bodies, items = _unpack(body)
    try:
        return [
            EventMessage(
                event_id=str(event_id),
                event_type=str(event_type),
                tenant_id=None if tenant is None else str(tenant),
                body=bodies[number],
                accepted_at=float(accepted_at),
            )
            for event_id, event_type, tenant, accepted_at, number in items
        ]
    except (TypeError, ValueError, IndexError) as exc:
        raise ValueError(f"batch message item unreadable: {exc}") from exc


def encode_deliveries(deliveries: Iterable[DeliveryMessage]) -> bytes:
    """One format 2 body carrying `deliveries`; those of one event share its body."""
    bodies: list[bytes] = []
    body_of: dict[str, int] = {}
    items: list[list[Any]] = []
    for d in deliveries:
        number = body_of.get(d.event_id)
        if number is None:
            number = body_of[d.event_id] = len(bodies)
            bodies.append(d.body)
        items.append(
            [
                d.delivery_id,
                d.event_id,
                d.subscription_id,
                d.event_type,
                d.attempt,
                d.accepted_at,
                number,
            ]
        )
    return _pack(bodies, items)


def decode_deliveries(body: bytes) -> list[DeliveryMessage]:
    """The deliveries of a format 2 `DELIVERIES` body (a repeated delivery id once);
    ValueError when it is malformed."""
    bodies, items = _unpack(body)
    seen: dict[str, DeliveryMessage] = {}
    try:
        for delivery_id, event_id, sub_id, event_type, attempt, accepted_at, number in items:
            key = str(delivery_id)
            if key not in seen:
                seen[key] = DeliveryMessage(
                    delivery_id=key,
                    event_id=str(event_id),
                    subscription_id=str(sub_id),
                    event_type=str(event_type),
                    body=bodies[number],
                    attempt=int(attempt),
                    accepted_at=float(accepted_at),
                )
    except (TypeError, ValueError, IndexError) as exc:
        raise ValueError(f"batch message item unreadable: {exc}") from exc
    return list(seen.values())


def delivery_count(message: ConsumedMessage) -> int:
    """How many deliveries `deliveries_of` will find in a message of either format (at most),
    read from its headers without decoding it."""
    if kind_of(message.headers) == DELIVERIES:
        return count_of(message.headers)
    return messages.delivery_count(message)


def deliveries_of(message: ConsumedMessage) -> list[DeliveryMessage]:
    """The deliveries a consumed message carries, in either format (see
    `messages.deliveries_of` for format 1); ValueError when it is malformed."""
    kind = kind_of(message.headers)
    if kind is None:
        return messages.deliveries_of(message)
    if kind != DELIVERIES:
        raise ValueError(f"a {kind} message is not a delivery message")
    return decode_deliveries(message.body)
