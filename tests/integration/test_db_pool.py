"""The pool's cheap reset still hands out clean connections."""

from __future__ import annotations

from shared.db import create_pool
from shared.settings import Settings


async def test_a_connection_released_inside_a_transaction_comes_back_rolled_back(
    settings: Settings,
) -> None:
    pool = await create_pool(settings.database_url.get_secret_value(), size=1)
    try:
        async with pool.acquire() as conn:
            await conn.execute("BEGIN")
            await conn.execute(
                "INSERT INTO event_types (name, description) VALUES ('half.done', 'x')"
            )
        async with pool.acquire() as conn:
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT count(*) FROM event_types") == 0
    finally:
        await pool.close()
