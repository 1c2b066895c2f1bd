"""The API's delivery store against the real database: undoing a re-send that was not sent."""

from __future__ import annotations

from services.ingest.store import deliveries as store
from shared.db import create_pool
from shared.settings import Settings
from tests.integration.test_sender_harness import database, insert_delivery, insert_subscription


async def test_a_retry_that_could_not_be_published_leaves_the_row_as_it_was(
    settings: Settings,
) -> None:
    async with database(settings) as conn:
        sub_id, _ = await insert_subscription(conn, "http://127.0.0.1:9/")
        msg = await insert_delivery(conn, sub_id)
        pool = await create_pool(settings.database_url.get_secret_value(), size=2)
        try:
            resend = await store.mark_for_retry(pool, msg.delivery_id)
            marked = await conn.fetchrow(
                "SELECT status, next_attempt_at FROM deliveries WHERE id = $1", msg.delivery_id
            )
            await store.restore(pool, [resend])
        finally:
            await pool.close()
        row = await conn.fetchrow(
            "SELECT status, next_attempt_at FROM deliveries WHERE id = $1", msg.delivery_id
        )

    assert marked["next_attempt_at"] is not None
    # Untouched again: a sender still takes it for a delivery nothing was done with yet
    # (a redelivered batch message leaves out rows with next_attempt_at set).
    assert (row["status"], row["next_attempt_at"]) == ("pending", None)
