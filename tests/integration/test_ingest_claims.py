"""Dispatch claims on stored events: which ingest process may publish an undispatched key."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from services.ingest.intake import CLAIM_STALE_S
from shared.db import create_pool
from shared.ids import new_id
from shared.models import EventIn
from shared.settings import Settings
from shared.stores import events as event_store
from shared.stores.events import NewEvent


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(settings.database_url.get_secret_value(), size=2)
    try:
        yield pool
    finally:
        await pool.close()


async def _age_claim(pool: asyncpg.Pool, event_id: str) -> None:
    """Make the event's claim look as old as one whose process hung."""
    await pool.execute(
        "UPDATE events SET dispatch_claimed_at = dispatch_claimed_at"
        " - $2::float8 * interval '1 second' WHERE id = $1",
        event_id,
        2 * CLAIM_STALE_S,
    )


async def test_a_stale_holder_releasing_leaves_the_new_holders_claim(pool: asyncpg.Pool) -> None:
    event = EventIn(type="order.created", data={"n": 1}, id="key-1")
    [(stored, stale_claim)] = await event_store.insert_many(
        pool, [NewEvent(new_id("evt"), event, "http")]
    )
    assert stale_claim is not None
    await _age_claim(pool, stored.id)
    taken = await event_store.claim_dispatch(pool, [stored.id], CLAIM_STALE_S)
    assert taken[stored.id][1] is not None

    # The first process wakes up, its publish failed, and it gives up what it thinks it holds.
    await event_store.release_dispatch(pool, {stored.id: stale_claim})

    third = await event_store.claim_dispatch(pool, [stored.id], CLAIM_STALE_S)
    assert third[stored.id][1] is None, "a third process may publish alongside the new holder"


async def test_the_holder_releasing_lets_the_next_copy_publish(pool: asyncpg.Pool) -> None:
    event = EventIn(type="order.created", data={"n": 2}, id="key-2")
    [(stored, claim)] = await event_store.insert_many(
        pool, [NewEvent(new_id("evt"), event, "http")]
    )
    assert claim is not None
    await event_store.release_dispatch(pool, {stored.id: claim})

    again = await event_store.claim_dispatch(pool, [stored.id], CLAIM_STALE_S)
    assert again[stored.id][1] is not None
