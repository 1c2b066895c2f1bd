"""Confirmed publishing gives every mandatory message a message id: aiormq matches a
basic.return to its publish by it, and without one a returned message would count as sent."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange
from aiormq import spec

from shared.wire.properties import json_message
from shared.wire.publish import publish_burst, publish_confirmed


@dataclass
class RecordingExchange:
    name: str = "ex"
    published: list[aio_pika.Message] = field(default_factory=list)

    async def publish(self, message: aio_pika.Message, routing_key: str, **_: Any) -> object:
        self.published.append(message)
        return spec.Basic.Ack()


@dataclass
class RecordingUnderlay:
    properties: list[spec.Basic.Properties] = field(default_factory=list)

    async def basic_publish(
        self, body: bytes, *, properties: spec.Basic.Properties, **_: Any
    ) -> object:
        self.properties.append(properties)
        return spec.Basic.Ack()


@dataclass
class RecordingChannel:
    underlay: RecordingUnderlay = field(default_factory=RecordingUnderlay)

    async def get_underlay_channel(self) -> RecordingUnderlay:
        return self.underlay


async def test_publish_confirmed_gives_a_message_without_id_a_unique_one() -> None:
    exchange = RecordingExchange()
    for _ in range(2):
        await publish_confirmed(cast(AbstractExchange, exchange), json_message(b"{}"), "q")
    await publish_confirmed(
        cast(AbstractExchange, exchange), json_message(b"{}", message_id="dlv_1"), "q"
    )
    ids = [m.message_id for m in exchange.published]
    assert ids[2] == "dlv_1"
    assert ids[0] and ids[1] and ids[0] != ids[1]


async def test_publish_burst_gives_each_message_without_id_its_own() -> None:
    channel = RecordingChannel()
    shared_props = spec.Basic.Properties(delivery_mode=2)
    kept = spec.Basic.Properties(delivery_mode=2, message_id="evt_1")
    results = await publish_burst(
        cast(AbstractChannel, channel),
        "ex",
        [(b"a", "k", shared_props), (b"b", "k", shared_props), (b"c", "k", kept)],
    )
    assert results == [None, None, None]
    ids = [p.message_id for p in channel.underlay.properties]
    assert ids[2] == "evt_1"
    assert ids[0] and ids[1] and ids[0] != ids[1]
    assert shared_props.message_id is None  # the caller's properties are left alone
