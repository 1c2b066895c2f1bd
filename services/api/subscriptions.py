"""`/v1/subscriptions`: the subscription resource (RESThooks), its secret and its deliveries.

The secret is shown on create, on rotate and on GET of one subscription, never in a list or
a log; it is sealed with `SecretBox` before it is stored.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web

from services.api.context import ApiContext
from services.api.problems import invalid
from services.api.routing import Call, Route, json_response
from services.api.schemas import decode_cursor, encode_cursor, page_of
from services.api.scope import forbidden_tenant, named_tenant, visible_subscription
from services.api.subscription_models import (
    SecretRotate,
    Subscription,
    SubscriptionCreate,
    SubscriptionPage,
    SubscriptionPatch,
    SubscriptionQuery,
    SubscriptionWithSecret,
)
from shared.errors import NotFound, TargetRefused
from shared.ids import new_id
from shared.logging import get_logger
from shared.matching import candidate_keys, is_valid_pattern
from shared.models import EVENT_TYPE_RE
from shared.signing import generate_secret
from shared.stores import deliveries as delivery_store
from shared.stores import subscriptions as store
from shared.stores import transaction
from shared.targets import check_target

log = get_logger("api")

TAG = "subscriptions"


def _out(row: asyncpg.Record, ctx: ApiContext) -> SubscriptionWithSecret:
    values: dict[str, Any] = dict(row)
    values["secret"] = ctx.box.open(values["secret"])
    return SubscriptionWithSecret.model_validate(values)


def _listed(row: asyncpg.Record) -> Subscription:
    values = dict(row)
    del values["secret"]
    return Subscription.model_validate(values)


async def _check_url(ctx: ApiContext, url: str) -> None:
    try:
        await check_target(url, ctx.targets)
    except TargetRefused as exc:
        raise invalid("body.url", str(exc)) from None


def _not_found(subscription_id: str) -> NotFound:
    return NotFound(f"no subscription {subscription_id}")


async def create_subscription(call: Call) -> web.StreamResponse:
    body = call.body_as(SubscriptionCreate)
    ctx = call.ctx
    tenant_id = named_tenant(call, body.tenant_id, "body.tenant_id")
    await _check_url(ctx, body.url)
    subscription_id = new_id("sub")
    row = await store.create(
        ctx.pool,
        subscription_id,
        url=body.url,
        event_types=body.event_types,
        description=body.description,
        tenant_id=tenant_id,
        sealed_secret=ctx.box.seal(body.secret or generate_secret()),
    )
    log.info("subscription_created", subscription_id=subscription_id, tenant_id=tenant_id)
    location = f"/v1/subscriptions/{subscription_id}"
    return json_response(_out(row, ctx), 201, headers={"Location": location})


def _patterns_filter(event_type: str | None) -> list[str] | None:
    if event_type is None:
        return None
    if EVENT_TYPE_RE.match(event_type):
        return candidate_keys(event_type)
    if is_valid_pattern(event_type):
        return [event_type]
    raise invalid("query.event_type", "neither an event type nor a subscription pattern")


async def list_subscriptions(call: Call) -> web.StreamResponse:
    query = call.query_as(SubscriptionQuery)
    cursor = decode_cursor(query.cursor, 1)
    rows = await store.list_page(
        call.ctx.pool,
        after_id=cursor[0] if cursor else None,
        patterns=_patterns_filter(query.event_type),
        status=query.status,
        tenant_id=named_tenant(call, query.tenant_id, "query.tenant_id"),
        limit=query.limit + 1,
    )
    page, more = page_of(rows, query.limit)
    next_cursor = encode_cursor([page[-1]["id"]]) if more else None
    return json_response(SubscriptionPage(data=[_listed(r) for r in page], next_cursor=next_cursor))


async def get_subscription(call: Call) -> web.StreamResponse:
    row = await visible_subscription(call, call.path("id"))
    return json_response(_out(row, call.ctx))


async def update_subscription(call: Call) -> web.StreamResponse:
    subscription_id = call.path("id")
    body = call.body_as(SubscriptionPatch)
    changes = body.model_dump(include=body.model_fields_set - {"status"})
    scope = call.principal.tenant_id
    # A portal token may name its own tenant; moving a subscription out of it (to another
    # tenant or to none) would hand it to someone else.
    if scope is not None and "tenant_id" in changes and changes["tenant_id"] != scope:
        raise forbidden_tenant(call, "body.tenant_id")
    if "url" in changes:
        await _check_url(call.ctx, changes["url"])
    row = await store.update(
        call.ctx.pool, subscription_id, changes, body.status, tenant_scope=scope
    )
    if row is None:
        raise _not_found(subscription_id)
    log.info(
        "subscription_updated",
        subscription_id=subscription_id,
        fields=sorted(body.model_fields_set),
        status=row["status"],
    )
    return json_response(_out(row, call.ctx))


async def delete_subscription(call: Call) -> web.StreamResponse:
    subscription_id = call.path("id")
    async with transaction(call.ctx.pool) as conn:
        if not await store.delete(conn, subscription_id, call.principal.tenant_id):
            raise _not_found(subscription_id)
        cancelled = await delivery_store.cancel_pending_of_subscription(conn, subscription_id)
    log.info("subscription_deleted", subscription_id=subscription_id, cancelled=cancelled)
    return web.Response(status=204)


async def rotate_secret(call: Call) -> web.StreamResponse:
    subscription_id = call.path("id")
    body = call.body if isinstance(call.body, SecretRotate) else SecretRotate()
    sealed = call.ctx.box.seal(body.secret or generate_secret())
    row = await store.rotate(
        call.ctx.pool, subscription_id, sealed, tenant_scope=call.principal.tenant_id
    )
    if row is None:
        raise _not_found(subscription_id)
    log.info("subscription_secret_rotated", subscription_id=subscription_id)
    return json_response(_out(row, call.ctx))


_ON_ONE = (404,)

ROUTES = [
    Route(
        "POST", "/v1/subscriptions", create_subscription, "Create a subscription", TAG, 201,
        SubscriptionWithSecret, body=SubscriptionCreate, errors=(403,),
        response_headers={"Location": "The new subscription's address."},
        links=(
            "get_subscription", "update_subscription", "delete_subscription", "rotate_secret",
            "list_deliveries", "recover_subscription",
        ),
    ),
    Route(
        "GET", "/v1/subscriptions", list_subscriptions, "List subscriptions (no secrets)", TAG,
        200, SubscriptionPage, query=SubscriptionQuery, errors=(403,),
    ),
    Route(
        "GET", "/v1/subscriptions/{id}", get_subscription, "Get a subscription with its secret",
        TAG, 200, SubscriptionWithSecret, errors=_ON_ONE,
    ),
    Route(
        "PATCH", "/v1/subscriptions/{id}", update_subscription,
        "Change a subscription; `status: enabled` re-enables it", TAG, 200,
        SubscriptionWithSecret, body=SubscriptionPatch, errors=(403, 404),
    ),
    Route(
        "DELETE", "/v1/subscriptions/{id}", delete_subscription,
        "Delete a subscription; its pending deliveries are cancelled", TAG, 204,
        errors=_ON_ONE,
    ),
    Route(
        "POST", "/v1/subscriptions/{id}/secret/rotate", rotate_secret,
        "Rotate the secret; the old one keeps signing beside it for 24 hours", TAG, 200,
        SubscriptionWithSecret, body=SecretRotate, body_required=False, errors=_ON_ONE,
    ),
]  # fmt: skip
