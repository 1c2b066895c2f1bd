"""Deliveries: read one with its attempts, list a subscription's, and send again.

A manual retry or a recovery sets the delivery back to `pending` first and then publishes a
fresh delivery message (attempt 1) with a confirm; if the publish fails, the status is put
back, so no delivery is left pending without a message on its way.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Literal

from aiohttp import web
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from services.api.context import ApiContext
from services.api.problems import invalid
from services.api.routing import Call, Route, json_response
from services.api.schemas import NOT_NULL, PageQuery, decode_cursor, encode_cursor, page_of
from services.api.scope import check_delivery, visible_subscription
from shared.errors import NotFound
from shared.logging import get_logger
from shared.models import webhook_body
from shared.stores import deliveries as store
from shared.stores.deliveries import Resend
from shared.wire.messages import DeliveryMessage

log = get_logger("api")

DeliveryStatus = Literal["pending", "succeeded", "failed", "cancelled"]
_PUBLISH_CHUNK = 200


class Delivery(BaseModel):
    id: str
    event_id: str
    subscription_id: str
    event_type: str
    status: DeliveryStatus
    attempts: int = Field(description="Attempts made so far.")
    last_status_code: int | None
    last_error: str | None
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None
    created_at: datetime
    updated_at: datetime


class Attempt(BaseModel):
    attempt: int
    attempted_at: datetime
    status_code: int | None
    duration_ms: int
    outcome: str
    error_kind: str | None
    error: str | None
    response_body: str | None = Field(description="The first 4 KiB of the response body.")


class DeliveryDetail(Delivery):
    attempt_log: list[Attempt] = Field(description="Every attempt, oldest first.")


class DeliveryPage(BaseModel):
    data: list[Delivery]
    next_cursor: str | None


class DeliveryQuery(PageQuery):
    status: DeliveryStatus | None = Field(None, json_schema_extra=NOT_NULL)


class RecoverRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: AwareDatetime = Field(description="RFC 3339; failed deliveries created since then.")


class Recovered(BaseModel):
    queued: int = Field(description="How many failed deliveries were sent again.")


def _message(resend: Resend) -> DeliveryMessage:
    return DeliveryMessage(
        delivery_id=resend.delivery_id,
        event_id=resend.event_id,
        subscription_id=resend.subscription_id,
        event_type=resend.event_type,
        body=webhook_body(resend.event_type, resend.created_at, resend.data),
        attempt=1,
        accepted_at=resend.created_at.timestamp(),
    )


async def publish_all(ctx: ApiContext, resends: list[Resend]) -> None:
    """Publish every resend (confirmed, a chunk at a time); restore the unsent on failure."""
    for start in range(0, len(resends), _PUBLISH_CHUNK):
        chunk = resends[start : start + _PUBLISH_CHUNK]
        results = await asyncio.gather(
            *(ctx.publisher.publish_delivery(_message(r)) for r in chunk), return_exceptions=True
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        sent = [r for r, res in zip(chunk, results, strict=True) if res is None]
        if sent:
            await store.mark_handed_on(ctx.pool, sent)
        if failures:
            unsent = [r for r, res in zip(chunk, results, strict=True) if res is not None]
            await store.restore(ctx.pool, unsent + resends[start + _PUBLISH_CHUNK :])
            raise failures[0]


async def get_delivery(call: Call) -> web.StreamResponse:
    delivery_id = call.path("id")
    await check_delivery(call, delivery_id)
    found = await store.get(call.ctx.pool, delivery_id)
    if found is None:
        raise NotFound(f"no delivery {delivery_id}")
    row, attempts = found
    detail = DeliveryDetail.model_validate(
        {**dict(row), "attempt_log": [dict(a) for a in attempts]}
    )
    return json_response(detail)


async def list_deliveries(call: Call) -> web.StreamResponse:
    subscription_id = call.path("id")
    query = call.query_as(DeliveryQuery)
    cursor = decode_cursor(query.cursor, 2)
    before = None
    if cursor is not None:
        try:
            before = (datetime.fromisoformat(cursor[0]), cursor[1])
        except ValueError:
            raise invalid("query.cursor", "not a cursor this API returned") from None
    await visible_subscription(call, subscription_id)
    rows = await store.list_page(
        call.ctx.pool,
        subscription_id,
        status=query.status,
        before=before,
        limit=query.limit + 1,
        tenant_scope=call.principal.tenant_id,
    )
    page, more = page_of(rows, query.limit)
    next_cursor = None
    if more:
        next_cursor = encode_cursor([page[-1]["created_at"].isoformat(), page[-1]["id"]])
    data = [Delivery.model_validate(dict(r)) for r in page]
    return json_response(DeliveryPage(data=data, next_cursor=next_cursor))


async def retry_delivery(call: Call) -> web.StreamResponse:
    delivery_id = call.path("id")
    resend = await store.mark_for_retry(
        call.ctx.pool, delivery_id, tenant_scope=call.principal.tenant_id
    )
    await publish_all(call.ctx, [resend])
    log.info("delivery_retry_queued", delivery_id=delivery_id, event_id=resend.event_id)
    found = await store.get(call.ctx.pool, delivery_id)
    assert found is not None
    return json_response(Delivery.model_validate(dict(found[0])), 202)


async def recover_subscription(call: Call) -> web.StreamResponse:
    subscription_id = call.path("id")
    since = call.body_as(RecoverRequest).since
    resends = await store.mark_recovered(
        call.ctx.pool, subscription_id, since, tenant_scope=call.principal.tenant_id
    )
    if resends is None:
        raise NotFound(f"no subscription {subscription_id}")
    await publish_all(call.ctx, resends)
    log.info("subscription_recovery_queued", subscription_id=subscription_id, queued=len(resends))
    return json_response(Recovered(queued=len(resends)), 202)


ROUTES = [
    Route(
        "GET", "/v1/deliveries/{id}", get_delivery, "Get a delivery with every attempt",
        "deliveries", 200, DeliveryDetail, errors=(404,),
    ),
    Route(
        "POST", "/v1/deliveries/{id}/retry", retry_delivery,
        "Send a delivery again now (also a failed one)", "deliveries", 202, Delivery,
        errors=(404, 409),
    ),
    Route(
        "GET", "/v1/subscriptions/{id}/deliveries", list_deliveries,
        "A subscription's deliveries, newest first", "deliveries", 200, DeliveryPage,
        query=DeliveryQuery, errors=(404,),
    ),
    Route(
        "POST", "/v1/subscriptions/{id}/recover", recover_subscription,
        "Send again every failed delivery created since a moment", "deliveries", 202,
        Recovered, body=RecoverRequest, errors=(404,),
    ),
]  # fmt: skip
