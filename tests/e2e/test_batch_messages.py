"""HOOKLINE_BATCH_MESSAGES on (wire format 2), the three real services as processes: events
published over AMQP and HTTP each reach their own subscriber once, signed. (Format 1 messages
consumed by this version: tests/integration/test_wire_format.py and every sender test.)"""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e.conftest import StackFactory
from tests.support.e2e import create_subscription, new_tenant, verified_payload
from tests.support.receiver import Receiver

pytestmark = pytest.mark.e2e

TENANTS = 4
EVENTS_PER_TENANT = 25
BATCHING = {"HOOKLINE_BATCH_MESSAGES": "true"}


async def test_each_tenants_events_reach_its_endpoint_once_signed(
    stack_factory: StackFactory, receiver: Receiver
) -> None:
    stack = stack_factory(env=BATCHING)
    tenants = [new_tenant() for _ in range(TENANTS)]
    secrets = {}
    async with stack.api() as api:
        for tenant in tenants:
            receiver.script(f"/{tenant}", 200)
            created = await create_subscription(
                api, receiver.url(f"/{tenant}"), ["order.*"], tenant_id=tenant
            )
            secrets[tenant] = created["secret"]
        # Half over HTTP, half over AMQP, interleaved so batches mix tenants.
        async with stack.publisher() as publisher:
            for n in range(EVENTS_PER_TENANT):
                for tenant in tenants:
                    event = {"type": "order.paid", "data": {"n": n}, "tenant_id": tenant}
                    if n % 2:
                        async with api.post("/v1/events", json=event) as answer:
                            assert answer.status == 202, await answer.text()
                    else:
                        await publisher.publish(event)

    total = TENANTS * EVENTS_PER_TENANT
    await receiver.wait_for(lambda got: len(got) >= total, timeout_s=60)
    await asyncio.sleep(0.5)  # a late duplicate would show up here
    for tenant in tenants:
        at = receiver.at(f"/{tenant}")
        numbers = [verified_payload(secrets[tenant], r)["data"]["n"] for r in at]
        assert sorted(numbers) == list(range(EVENTS_PER_TENANT))
    assert len(receiver.received) == total
