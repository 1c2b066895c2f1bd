"""Fakes of an AMQP channel for pure-logic tests of acking (no broker involved)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class FakeChannel:
    """Records every basic.ack sent on it."""

    acks: list[tuple[int, bool]] = field(default_factory=list)
    is_closed: bool = False

    async def basic_ack(self, delivery_tag: int, multiple: bool = False) -> None:
        self.acks.append((delivery_tag, multiple))
