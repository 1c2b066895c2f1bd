"""The API's delivery store against the real database: re-sends marked only once confirmed,
and undone without undoing what a sender did meanwhile."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from shared.db import create_pool
from shared.settings import Settings
from shared.stores import deliveries as store
from tests.support.sender import database, insert_delivery, insert_subscription


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    value = await create_pool(settings.database_url.get_secret_value(), size=2)
    yield value
    await value.close()


async def _row(conn: asyncpg.Connection, delivery_id: str) -> tuple[str, object]:
    row = await conn.fetchrow(
        "SELECT status, next_attempt_at FROM deliveries WHERE id = $1", delivery_id
    )
    assert row is not None
    return row["status"], row["next_attempt_at"]


async def test_a_retry_is_marked_handed_on_only_once_its_copy_is_confirmed(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with database(settings) as conn:
        sub_id, _ = await insert_subscription(conn, "http://127.0.0.1:9/")
        msg = await insert_delivery(conn, sub_id)
        resend = await store.mark_for_retry(pool, msg.delivery_id)
        # Not yet: a batch message handed out again meanwhile must still send it.
        before = await _row(conn, msg.delivery_id)
        await store.mark_handed_on(pool, [resend])
        after = await _row(conn, msg.delivery_id)

    assert before == ("pending", None)
    assert after[0] == "pending" and after[1] is not None


async def test_a_retry_that_could_not_be_published_is_undone_unless_a_sender_settled_it(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with database(settings) as conn:
        sub_id, _ = await insert_subscription(conn, "http://127.0.0.1:9/")
        failed = await insert_delivery(conn, sub_id)
        settled = await insert_delivery(conn, sub_id)
        for delivery in (failed, settled):
            await conn.execute(
                "UPDATE deliveries SET status = 'failed', attempts = 3 WHERE id = $1",
                delivery.delivery_id,
            )
        resends = [await store.mark_for_retry(pool, d.delivery_id) for d in (failed, settled)]
        # Meanwhile a sender delivered the second one (an older copy came back).
        await conn.execute(
            "UPDATE deliveries SET status = 'succeeded' WHERE id = $1", settled.delivery_id
        )
        await store.restore(pool, resends)

        assert await _row(conn, failed.delivery_id) == ("failed", None)
        assert await _row(conn, settled.delivery_id) == ("succeeded", None)
