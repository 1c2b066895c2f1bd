"""Helpers of the fanout and subscription-cache tests: rows written straight into Postgres."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import asyncpg
import pytest

from shared.ids import new_id
from shared.signing import generate_secret


async def insert_subscription(
    conn: asyncpg.Connection,
    event_types: list[str],
    *,
    tenant_id: str | None = None,
    status: str = "enabled",
    deleted: bool = False,
    secret: str | None = None,
    url: str = "http://127.0.0.1:9/hook",
) -> str:
    """Insert one subscription row as the API would store it; returns its id."""
    sub_id = new_id("sub")
    await conn.execute(
        "INSERT INTO subscriptions (id, url, event_types, status, disabled_reason, tenant_id,"
        " secret, deleted_at) VALUES ($1, $2, $3, $4, $5, $6, $7,"
        " CASE WHEN $8 THEN now() END)",
        sub_id,
        url,
        event_types,
        status,
        None if status == "enabled" else "manual",
        tenant_id,
        secret or generate_secret(),
        deleted,
    )
    return sub_id


async def eventually(check: Callable[[], bool], within_s: float = 1.0) -> None:
    """Wait until `check()` holds; fail after `within_s`."""
    deadline = asyncio.get_running_loop().time() + within_s
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"not true within {within_s}s")
        await asyncio.sleep(0.01)


async def eventually_async(check: Callable[[], Awaitable[bool]], within_s: float = 1.0) -> None:
    """Wait until `await check()` holds; fail after `within_s`."""
    deadline = asyncio.get_running_loop().time() + within_s
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"not true within {within_s}s")
        await asyncio.sleep(0.01)
