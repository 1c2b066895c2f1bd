"""Test events (`POST /v1/subscriptions/{id}/test`): an event and its one delivery, stored
in one transaction through the events and deliveries stores.

The event is stored already dispatched, so it never goes to fanout: its one delivery, to the
chosen subscription, is created here and sent by the caller like a manual retry.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from shared.stores import deliveries, events, subscriptions, transaction
from shared.stores.deliveries import Resend

TEST_EVENT_TYPE = "hookline.test"


async def create(
    pool: asyncpg.Pool,
    *,
    event_id: str,
    delivery_id: str,
    subscription_id: str,
    tenant_scope: str | None,
    data: dict[str, Any],
) -> Resend | None:
    """Store the test event (of the subscription's tenant) and its pending delivery; what
    sending it needs. None when the subscription is not live or not of `tenant_scope`.

    Should the send fail, the delivery is restored to `failed`, so recovery can send it.
    """
    async with transaction(pool) as conn:
        subscription = await subscriptions.lock_in_scope(conn, subscription_id, tenant_scope)
        if subscription is None:
            return None
        created_at = await events.insert_test(
            conn, event_id, TEST_EVENT_TYPE, data, subscription["tenant_id"]
        )
        await deliveries.insert_test(conn, delivery_id, event_id, subscription_id)
    return Resend(
        delivery_id=delivery_id,
        subscription_id=subscription_id,
        event_id=event_id,
        event_type=TEST_EVENT_TYPE,
        data=data,
        created_at=created_at,
        previous_status="failed",
    )
