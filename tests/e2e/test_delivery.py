"""An event published to Hookline arrives, signed, once at each matching subscription only."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.support import unique_name
from tests.support.e2e import create_subscription, new_tenant, verified_payload
from tests.support.receiver import Received, Receiver
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e


def with_marker(requests: list[Received], path: str, marker: str) -> list[Received]:
    """Requests to `path` whose event data carries `marker` (each test marks its own events)."""
    return [r for r in requests if r.path == path and r.json()["data"].get("marker") == marker]


def event(event_type: str, marker: str, tenant_id: str | None, **data: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"type": event_type, "data": {"marker": marker, **data}}
    if tenant_id is not None:
        body["tenant_id"] = tenant_id
    return body


async def test_amqp_event_reaches_each_matching_subscription_once_signed(
    stack: Stack, receiver: Receiver
) -> None:
    tenant, other_tenant = new_tenant(), new_tenant()
    async with stack.api() as api:
        subs = {
            "/exact": await create_subscription(
                api, receiver.url("/exact"), ["invoice.paid"], tenant_id=tenant
            ),
            "/prefix": await create_subscription(
                api, receiver.url("/prefix"), ["invoice.*"], tenant_id=tenant
            ),
            "/all": await create_subscription(api, receiver.url("/all"), ["*"], tenant_id=tenant),
            "/orders": await create_subscription(
                api, receiver.url("/orders"), ["order.*"], tenant_id=tenant
            ),
            "/other-tenant": await create_subscription(
                api, receiver.url("/other-tenant"), ["*"], tenant_id=other_tenant
            ),
            "/no-tenant": await create_subscription(api, receiver.url("/no-tenant"), ["invoice.*"]),
        }
    paid, later = unique_name("paid-"), unique_name("sentinel-")
    async with stack.publisher() as publisher:
        await publisher.publish(event("invoice.paid", paid, tenant, invoice_id="in_1", amount=990))
        # Sentinels, published after: once each has reached the subscriptions that must NOT
        # get the event, a wrong delivery of the event would have had its chance to show.
        await publisher.publish(event("order.shipped", later, tenant))
        await publisher.publish(event("invoice.paid", later, other_tenant))
        await publisher.publish(event("invoice.paid", later, None))

    matching = ("/exact", "/prefix", "/all")
    not_matching = ("/orders", "/other-tenant", "/no-tenant")
    await receiver.wait_for(
        lambda got: (
            all(with_marker(got, p, paid) for p in matching)
            and all(with_marker(got, p, later) for p in (*not_matching, "/all"))
        )
    )

    got = receiver.received
    for path in matching:
        [request] = with_marker(got, path, paid)
        payload = verified_payload(subs[path]["secret"], request)
        assert payload["type"] == "invoice.paid"
        assert payload["data"] == {"marker": paid, "invoice_id": "in_1", "amount": 990}
        assert payload["timestamp"].endswith("Z")
        assert request.webhook_id.startswith("evt_")
        assert request.headers["content-type"].startswith("application/json")
        assert request.headers["user-agent"].startswith("Hookline/")
    assert len({with_marker(got, p, paid)[0].webhook_id for p in matching}) == 1
    for path in not_matching:
        assert with_marker(got, path, paid) == [], f"{path} got an event it does not match"


async def test_same_idempotency_key_is_delivered_once(stack: Stack, receiver: Receiver) -> None:
    tenant = new_tenant()
    async with stack.api() as api:
        await create_subscription(api, receiver.url("/hooks"), ["invoice.*"], tenant_id=tenant)
    key, marker, later = unique_name("key-"), unique_name("once-"), unique_name("sentinel-")
    duplicate = {**event("invoice.paid", marker, tenant), "id": key}
    async with stack.publisher() as publisher:
        await publisher.publish(duplicate)
        await publisher.publish(duplicate)
    async with stack.api() as api:
        async with api.post("/v1/events", json=duplicate) as answer:
            assert answer.status == 200, await answer.text()
    async with stack.publisher() as publisher:
        await publisher.publish(event("invoice.paid", later, tenant))

    await receiver.wait_for(
        lambda got: bool(with_marker(got, "/hooks", marker) and with_marker(got, "/hooks", later))
    )
    assert len(with_marker(receiver.received, "/hooks", marker)) == 1


async def test_http_event_is_delivered_and_its_duplicate_answers_200(
    stack: Stack, receiver: Receiver
) -> None:
    tenant = new_tenant()
    async with stack.api() as api:
        sub = await create_subscription(api, receiver.url("/http"), ["user.*"], tenant_id=tenant)
        marker = unique_name("http-")
        body = {**event("user.signed_up", marker, tenant, plan="pro"), "id": unique_name("k-")}
        async with api.post("/v1/events", json=body) as answer:
            assert answer.status == 202, await answer.text()
            first = await answer.json()
        async with api.post("/v1/events", json=body) as answer:
            assert answer.status == 200, await answer.text()
            again = await answer.json()
    assert again["id"] == first["id"]

    await receiver.wait_for(lambda got: bool(with_marker(got, "/http", marker)))
    [request] = with_marker(receiver.received, "/http", marker)
    payload = verified_payload(sub["secret"], request)
    assert payload["type"] == "user.signed_up"
    assert payload["data"] == {"marker": marker, "plan": "pro"}


async def test_invalid_messages_end_in_the_rejected_queue_with_a_reason(stack: Stack) -> None:
    marker = unique_name("bad-")
    invalid = {
        "not json": f"not json {marker}".encode(),
        "no type": b'{"data": {"marker": "%s"}}' % marker.encode(),
        "bad type name": b'{"type": "Invoice Paid", "data": {"marker": "%s"}}' % marker.encode(),
        "too large": b'{"type": "invoice.paid", "data": {"marker": "%s", "blob": "%s"}}'
        % (marker.encode(), b"x" * (stack.settings.max_payload + 1)),
    }
    async with stack.publisher() as publisher:
        for body in invalid.values():
            await publisher.publish(body, routing_key="invoice.paid")

    rejected: dict[bytes, str] = {}
    queue = stack.topology.rejected_queue.name
    for _ in range(150):
        for message in await stack.read_queue(queue):
            rejected[message.body] = str((message.headers or {}).get("x-hookline-error", ""))
        if all(body in rejected for body in invalid.values()):
            break
        await asyncio.sleep(0.2)
    for what, body in invalid.items():
        assert body in rejected, f"the {what} message is not in {queue}"
        assert rejected[body], f"the {what} message carries no x-hookline-error reason"
