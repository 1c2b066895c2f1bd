"""What the end-to-end tests do through the public interfaces: the API and the webhooks."""

from __future__ import annotations

from typing import Any

import aiohttp
from standardwebhooks import Webhook

from tests.support import unique_name
from tests.support.receiver import Received


def new_tenant() -> str:
    """A tenant id of its own, so that tests sharing a stack never see each other's events."""
    return unique_name("tenant-")


async def create_subscription(
    api: aiohttp.ClientSession,
    url: str,
    event_types: list[str],
    *,
    tenant_id: str | None = None,
) -> dict[str, Any]:
    """`POST /v1/subscriptions`; fails the test unless the answer is 201 with a secret."""
    body: dict[str, Any] = {"url": url, "event_types": event_types}
    if tenant_id is not None:
        body["tenant_id"] = tenant_id
    async with api.post("/v1/subscriptions", json=body) as answer:
        text = await answer.text()
        assert answer.status == 201, f"create subscription: {answer.status} {text}"
        created: dict[str, Any] = await answer.json()
    assert created["secret"].startswith("whsec_"), created
    return created


async def delete_subscription(api: aiohttp.ClientSession, subscription_id: str) -> None:
    async with api.delete(f"/v1/subscriptions/{subscription_id}") as answer:
        assert answer.status == 204, await answer.text()


def verified_payload(secret: str, request: Received) -> dict[str, Any]:
    """The webhook's JSON after checking its signature as a receiver would (standardwebhooks)."""
    payload: dict[str, Any] = Webhook(secret).verify(request.body, request.headers)
    return payload


def event_ids_at(requests: list[Received], path: str) -> list[str]:
    """The `webhook-id` of every request to `path`, duplicates included."""
    return [r.webhook_id for r in requests if r.path == path]


def received_types(requests: list[Received], path: str) -> list[str]:
    return [str(r.json()["type"]) for r in requests if r.path == path]
