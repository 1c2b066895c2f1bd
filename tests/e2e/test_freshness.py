"""Subscription changes made through the API take effect at once (issue 3, "freshness")."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import aiohttp
import pytest

from tests.e2e.conftest import StackFactory
from tests.support import unique_name
from tests.support.e2e import create_subscription, new_tenant, verified_payload
from tests.support.receiver import Received, Receiver
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e


def marked(requests: list[Received], path: str, marker: str) -> list[Received]:
    return [r for r in requests if r.path == path and r.json()["data"].get("marker") == marker]


def event(marker: str, tenant: str) -> dict[str, Any]:
    return {"type": "invoice.paid", "data": {"marker": marker}, "tenant_id": tenant}


async def patch_status(api: aiohttp.ClientSession, subscription_id: str, status: str) -> None:
    async with api.patch(f"/v1/subscriptions/{subscription_id}", json={"status": status}) as a:
        assert a.status == 200, await a.text()


async def test_created_then_published_at_once_is_delivered(
    stack: Stack, receiver: Receiver
) -> None:
    tenant, marker = new_tenant(), unique_name("fresh-")
    async with stack.api() as api:
        sub = await create_subscription(api, receiver.url("/new"), ["invoice.*"], tenant_id=tenant)
    # No pause: the event is published the moment the API has answered 201.
    async with stack.publisher() as publisher:
        await publisher.publish(event(marker, tenant))
    await receiver.wait_for(lambda got: bool(marked(got, "/new", marker)))
    [request] = marked(receiver.received, "/new", marker)
    assert verified_payload(sub["secret"], request)["data"] == {"marker": marker}


async def test_disabled_gets_nothing_more_and_re_enabled_gets_new_events(
    stack: Stack, receiver: Receiver
) -> None:
    tenant = new_tenant()
    async with stack.api() as api:
        sub = await create_subscription(api, receiver.url("/off"), ["invoice.*"], tenant_id=tenant)
        await create_subscription(api, receiver.url("/witness"), ["invoice.*"], tenant_id=tenant)
        await patch_status(api, sub["id"], "disabled")
    while_off, back_on = unique_name("off-"), unique_name("on-")
    async with stack.publisher() as publisher:
        await publisher.publish(event(while_off, tenant))
    # The witness, enabled all along, shows the event went through the whole pipeline.
    await receiver.wait_for(lambda got: bool(marked(got, "/witness", while_off)))

    async with stack.api() as api:
        await patch_status(api, sub["id"], "enabled")
    async with stack.publisher() as publisher:
        await publisher.publish(event(back_on, tenant))
    await receiver.wait_for(lambda got: bool(marked(got, "/off", back_on)))
    assert marked(receiver.received, "/off", while_off) == []


async def sender_metric(stack: Stack, name: str) -> float:
    url = f"http://127.0.0.1:{stack.procs['sender'].metrics_port}/metrics"
    async with aiohttp.ClientSession() as http, http.get(url) as answer:
        text = await answer.text()
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def test_deleting_cancels_a_pending_retry(
    stack_factory: StackFactory, receiver: Receiver
) -> None:
    stack = stack_factory(env={"HOOKLINE_RETRY_DELAYS": "2s,2s"})
    receiver.script("/failing", 500)
    tenant, marker = new_tenant(), unique_name("del-")
    async with stack.api() as api:
        sub = await create_subscription(
            api, receiver.url("/failing"), ["invoice.*"], tenant_id=tenant
        )
    async with stack.publisher() as publisher:
        await publisher.publish(event(marker, tenant))
    [first] = await receiver.wait_for(lambda got: bool(marked(got, "/failing", marker)))
    async with stack.api() as api:
        async with api.delete(f"/v1/subscriptions/{sub['id']}") as answer:
            assert answer.status == 204
        async with api.get(f"/v1/events/{first.webhook_id}") as answer:
            [delivery] = (await answer.json())["deliveries"]
        assert delivery["status"] == "cancelled"

    # The retry leaves its queue after 2 s; the sender then finds the subscription gone.
    deadline = time.monotonic() + 20
    while await sender_metric(stack, "hookline_deliveries_cancelled_total") < 1:
        assert time.monotonic() < deadline, "the pending retry was never consumed"
        await asyncio.sleep(0.2)
    assert len(marked(receiver.received, "/failing", marker)) == 1
    async with stack.api() as api, api.get(f"/v1/deliveries/{delivery['id']}") as answer:
        assert (await answer.json())["status"] == "cancelled"
