"""A world of two tenants for the portal tests: subscriptions, events and deliveries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from shared.ids import delivery_id
from tests.support.ingest import Ingest


@dataclass
class Tenant:
    name: str | None
    subscription: str
    event: str
    delivery: str


@dataclass
class World:
    own: Tenant
    other: Tenant
    untenanted: Tenant
    session: dict[str, Any]
    """The portal session of `own`: id, token, url, tenant_id, expires_at."""

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.session['token']}"}


async def _tenant(api: Ingest, conn: asyncpg.Connection, name: str | None) -> Tenant:
    body: dict[str, Any] = {"url": "http://127.0.0.1:9/hooks", "event_types": ["invoice.*"]}
    event: dict[str, Any] = {"type": "invoice.paid", "data": {"for": name}}
    if name is not None:
        body["tenant_id"] = name
        event["tenant_id"] = name
    status, sub, _ = await api.call("POST", "/v1/subscriptions", body)
    assert status == 201, sub
    status, evt, _ = await api.call("POST", "/v1/events", event)
    assert status == 202, evt
    dlv = delivery_id(evt["id"], sub["id"])
    await conn.execute(
        "INSERT INTO deliveries (id, event_id, subscription_id, status) VALUES ($1, $2, $3,"
        " 'failed')",
        dlv,
        evt["id"],
        sub["id"],
    )
    return Tenant(name, sub["id"], evt["id"], dlv)


async def make_world(api: Ingest) -> World:
    conn = await asyncpg.connect(api.settings.database_url.get_secret_value())
    try:
        own = await _tenant(api, conn, "acme")
        other = await _tenant(api, conn, "globex")
        untenanted = await _tenant(api, conn, None)
    finally:
        await conn.close()
    status, session, _ = await api.call("POST", "/v1/portal-sessions", {"tenant_id": "acme"})
    assert status == 201, session
    return World(own, other, untenanted, session)


async def portal_call(
    api: Ingest, world: World, method: str, path: str, body: Any = None
) -> tuple[int, Any]:
    """A request with the portal token instead of the operator's; (status, body)."""
    status, answer, _ = await api.call(method, path, body, auth=False, headers=world.auth)
    return status, answer
