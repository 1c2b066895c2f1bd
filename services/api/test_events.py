"""`POST /v1/subscriptions/{id}/test`: send a `hookline.test` event to one subscription.

It goes to that subscription only, whatever its `event_types`, through the path a manual
retry takes (a delivery message published with a confirm), so it is signed, retried and
recorded like any other delivery.
"""

from __future__ import annotations

from aiohttp import web

from services.api.deliveries import Delivery, publish_all
from services.api.routing import Call, Route, json_response
from shared.errors import NotFound
from shared.ids import delivery_id, new_id
from shared.logging import get_logger
from shared.stores import deliveries as delivery_store
from shared.stores import test_events as store

log = get_logger("api")


async def send_test_event(call: Call) -> web.StreamResponse:
    subscription_id = call.path("id")
    event_id = new_id("evt")
    resend = await store.create(
        call.ctx.pool,
        event_id=event_id,
        delivery_id=delivery_id(event_id, subscription_id),
        subscription_id=subscription_id,
        tenant_scope=call.principal.tenant_id,
        data={
            "message": "A test event sent from Hookline.",
            "subscription_id": subscription_id,
        },
    )
    if resend is None:
        raise NotFound(f"no subscription {subscription_id}")
    await publish_all(call.ctx, [resend])
    log.info("test_event_queued", subscription_id=subscription_id, event_id=event_id)
    found = await delivery_store.get(call.ctx.pool, resend.delivery_id)
    assert found is not None
    return json_response(Delivery.model_validate(dict(found[0])), 202)


ROUTES = [
    Route(
        "POST", "/v1/subscriptions/{id}/test", send_test_event,
        "Send a `hookline.test` event to this subscription only", "subscriptions", 202,
        Delivery, errors=(404,), links=("get_delivery", "retry_delivery"),
    ),
]  # fmt: skip
