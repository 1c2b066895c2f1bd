"""Publishing a batch of events: each message's outcome is its own, whatever went wrong."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from aio_pika.abc import AbstractChannel, AbstractExchange
from aiormq import spec

from services.ingest.publisher import Publisher
from shared.errors import BrokerUnavailable
from shared.topology import Topology
from shared.wire import batches
from shared.wire.messages import EventMessage


@dataclass
class _Exchange:
    name: str


@dataclass
class _Underlay:
    """Confirms every publish but those of event ids in `broken`, which hit a bug."""

    broken: set[str]
    published: list[str] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)

    async def basic_publish(self, body: bytes, **kwargs: Any) -> object:
        event_id = kwargs["properties"].message_id
        if event_id in self.broken:
            raise ValueError("a bug, not an outage")
        self.published.append(event_id)
        self.bodies.append(body)
        return spec.Basic.Ack()


@dataclass
class _Channel:
    underlay: _Underlay

    async def get_underlay_channel(self) -> _Underlay:
        return self.underlay


def _event(event_id: str) -> EventMessage:
    return EventMessage(
        event_id=event_id,
        event_type="order.created",
        tenant_id=None,
        body=b"{}",
        accepted_at=0.0,
    )


async def test_an_unexpected_error_fails_only_its_own_event() -> None:
    topology = Topology("unit", (0.2,))
    exchanges = {
        name: cast(AbstractExchange, _Exchange(name))
        for name in (topology.events_exchange.name, topology.deliveries_exchange.name)
    }
    underlay = _Underlay(broken={"evt_2"})
    publisher = Publisher(cast(AbstractChannel, _Channel(underlay)), topology, exchanges)

    outcomes = await publisher.publish_events([_event("evt_1"), _event("evt_2"), _event("evt_3")])

    assert underlay.published == ["evt_1", "evt_3"]
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], BrokerUnavailable)


async def test_with_batching_events_share_one_message_and_its_outcome(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(batches, "MAX_ITEMS", 2)  # stands for the real bound of 500
    topology = Topology("unit", (0.2,))
    exchanges = {
        name: cast(AbstractExchange, _Exchange(name))
        for name in (topology.events_exchange.name, topology.deliveries_exchange.name)
    }
    # The second message (events 3 and 4) hits a bug; the others are confirmed.
    underlay = _Underlay(broken={"events.evt_3"})
    channel = cast(AbstractChannel, _Channel(underlay))
    publisher = Publisher(channel, topology, exchanges, batch=True)
    events = [_event(f"evt_{n}") for n in range(1, 6)]

    outcomes = await publisher.publish_events(events)

    assert underlay.published == ["events.evt_1", "events.evt_5"]
    assert [o is None for o in outcomes] == [True, True, False, False, True]
    assert all(isinstance(o, BrokerUnavailable) for o in outcomes[2:4])
    assert [b.decode()[:1] for b in underlay.bodies] == ["{", "{"]
    decoded = [e for body in underlay.bodies for e in batches.decode_events(body)]
    assert [e.event_id for e in decoded] == ["evt_1", "evt_2", "evt_5"]
