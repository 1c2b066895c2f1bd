"""SIGTERM under load: the sender drains, exits 0, and a new sender delivers the rest."""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e.conftest import StackFactory
from tests.support.e2e import create_subscription, new_tenant
from tests.support.receiver import Receiver

pytestmark = pytest.mark.e2e

EVENTS = 200


async def test_sigterm_during_load_exits_0_and_loses_nothing(
    stack_factory: StackFactory, receiver: Receiver
) -> None:
    # A slow receiver and few attempts per target keep deliveries in flight at the SIGTERM.
    stack = stack_factory(env={"HOOKLINE_SENDER_PER_TARGET_CONCURRENCY": "8"})
    receiver.script("/slow", 200, delay_s=0.1)
    tenant = new_tenant()
    async with stack.api() as api:
        await create_subscription(api, receiver.url("/slow"), ["*"], tenant_id=tenant)

    async with stack.publisher() as publisher:
        for n in range(EVENTS):
            await publisher.publish({"type": "load.tick", "data": {"n": n}, "tenant_id": tenant})

    def delivered() -> set[int]:
        return {r.json()["data"]["n"] for r in receiver.at("/slow")}

    await receiver.wait_for(lambda _: len(delivered()) >= EVENTS // 5, timeout_s=60)
    exit_code = await asyncio.to_thread(stack.stop, "sender")
    assert exit_code == 0, stack.log_text()[-4000:]

    await asyncio.to_thread(stack.start, "sender")
    await receiver.wait_for(lambda _: len(delivered()) == EVENTS, timeout_s=90)
    assert delivered() == set(range(EVENTS))
