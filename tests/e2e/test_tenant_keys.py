"""One idempotency key used by two tenants: each tenant's event is stored and delivered."""

from __future__ import annotations

import pytest

from tests.support import unique_name
from tests.support.e2e import create_subscription, new_tenant
from tests.support.receiver import Receiver
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e


async def test_two_tenants_with_the_same_key_both_get_their_webhook(
    stack: Stack, receiver: Receiver
) -> None:
    tenants = {new_tenant(): "/one", new_tenant(): "/two"}
    async with stack.api() as api:
        for tenant, path in tenants.items():
            await create_subscription(api, receiver.url(path), ["order.*"], tenant_id=tenant)
    key, sentinel = unique_name("order-"), unique_name("sentinel-")
    events: dict[str, str] = {}
    async with stack.api() as api:
        for tenant in tenants:
            body = {"type": "order.created", "data": {"marker": tenant}, "id": key}
            async with api.post("/v1/events", json={**body, "tenant_id": tenant}) as answer:
                assert answer.status == 202, await answer.text()
                events[tenant] = (await answer.json())["id"]
        for tenant in tenants:
            body = {"type": "order.created", "data": {"marker": tenant}, "id": key}
            async with api.post("/v1/events", json={**body, "tenant_id": tenant}) as answer:
                assert answer.status == 200
                again = await answer.json()
                assert again["id"] == events[tenant] and again["data"] == {"marker": tenant}
    async with stack.publisher() as publisher:
        for tenant in tenants:
            await publisher.publish(
                {
                    "type": "order.created",
                    "data": {"marker": tenant},
                    "id": key,
                    "tenant_id": tenant,
                }
            )
            await publisher.publish(
                {"type": "order.created", "data": {"marker": sentinel}, "tenant_id": tenant}
            )

    def marked(path: str, marker: str) -> list[str]:
        return [
            r.headers["webhook-id"]
            for r in receiver.received
            if r.path == path and r.json()["data"]["marker"] == marker
        ]

    await receiver.wait_for(lambda _: all(marked(p, sentinel) for p in tenants.values()))
    for tenant, path in tenants.items():
        assert marked(path, tenant) == [events[tenant]]
