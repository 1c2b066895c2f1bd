"""Tenant scope of a request (CONTRACT section 3): what a portal token may see and name.

An operator sees every tenant. A portal token sees its own tenant only: anything of another
tenant is a 404, as if it did not exist, while naming another tenant outright (a filter, a
body field) is a 403, since the caller plainly asked for what it may not have.
"""

from __future__ import annotations

import asyncpg

from services.api.problems import Problem
from services.api.routing import Call
from shared.errors import NotFound
from shared.stores import subscriptions as subscription_store
from shared.stores.tenancy import delivery_tenant


def can_see(call: Call, tenant_id: str | None) -> bool:
    """Whether the caller may see a resource of `tenant_id`."""
    own = call.principal.tenant_id
    return own is None or tenant_id == own


def named_tenant(call: Call, tenant_id: str | None, field: str) -> str | None:
    """The tenant a filter or a new resource gets: a portal token's own; 403 for another.

    For an operator `tenant_id` as given; for a portal token its tenant when `tenant_id` is
    None or the same, else a 403 on `field`.
    """
    own = call.principal.tenant_id
    if own is None:
        return tenant_id
    if tenant_id is not None and tenant_id != own:
        raise forbidden_tenant(call, field)
    return own


def forbidden_tenant(call: Call, field: str) -> Problem:
    return Problem(
        403,
        f"{field}: this token is scoped to tenant {call.principal.tenant_id}",
        errors=[{"field": field, "message": "names another tenant"}],
    )


async def visible_subscription(call: Call, subscription_id: str) -> asyncpg.Record:
    """A live subscription the caller may see; NotFound (404) otherwise."""
    row = await subscription_store.get(call.ctx.pool, subscription_id)
    if row is None or not can_see(call, row["tenant_id"]):
        raise NotFound(f"no subscription {subscription_id}")
    return row


async def check_delivery(call: Call, delivery_id: str) -> None:
    """NotFound (404) unless the delivery's subscription is of the caller's tenant."""
    if call.principal.is_operator:
        return
    exists, tenant_id = await delivery_tenant(call.ctx.pool, delivery_id)
    if not exists or not can_see(call, tenant_id):
        raise NotFound(f"no delivery {delivery_id}")
