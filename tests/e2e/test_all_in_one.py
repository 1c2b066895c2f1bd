"""`hookline all` runs the three services in one process and delivers like the separate ones."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import StackFactory
from tests.support import unique_name
from tests.support.e2e import create_subscription, verified_payload
from tests.support.receiver import Receiver

pytestmark = pytest.mark.e2e


async def test_hookline_all_delivers_events_from_amqp_and_http(
    stack_factory: StackFactory, receiver: Receiver
) -> None:
    stack = stack_factory(services=("all",))
    async with stack.api() as api:
        sub = await create_subscription(api, receiver.url("/all"), ["invoice.*"])
        over_http = unique_name("http-")
        async with api.post(
            "/v1/events", json={"type": "invoice.created", "data": {"marker": over_http}}
        ) as answer:
            assert answer.status == 202, await answer.text()
    over_amqp = unique_name("amqp-")
    async with stack.publisher() as publisher:
        await publisher.publish({"type": "invoice.paid", "data": {"marker": over_amqp}})

    await receiver.wait_for(lambda got: len(got) >= 2)
    payloads = [verified_payload(sub["secret"], r) for r in receiver.received]
    assert sorted(p["data"]["marker"] for p in payloads) == sorted([over_http, over_amqp])
