"""Events stored in batches keep every guarantee of one-by-one storing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aio_pika
import asyncpg
import orjson
import pytest

from shared.settings import Settings
from shared.wire.messages import H_ERROR, H_REASON
from tests.support.ingest import Ingest, running_ingest


@pytest.fixture
async def ingest(settings: Settings) -> AsyncIterator[Ingest]:
    async with running_ingest(settings) as running:
        yield running


async def _publish_burst(ingest: Ingest, bodies: list[bytes]) -> None:
    """Publish every body before awaiting any confirm, so ingest consumes them together."""
    exchange = await ingest.channel.get_exchange(ingest.topology.ingest_exchange.name)
    await asyncio.gather(
        *(
            exchange.publish(
                aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                "order.created",
            )
            for body in bodies
        )
    )


async def _stored(ingest: Ingest) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(ingest.settings.database_url.get_secret_value())
    try:
        return list(await conn.fetch("SELECT id, idempotency_key, dispatched_at FROM events"))
    finally:
        await conn.close()


async def test_a_burst_of_events_is_stored_and_published_once_each(ingest: Ingest) -> None:
    bodies = [orjson.dumps({"type": "order.created", "data": {"n": n}}) for n in range(300)]
    await _publish_burst(ingest, bodies)
    got = await ingest.take(ingest.events, 300, timeout_s=30)
    assert sorted(orjson.loads(m.body)["data"]["n"] for m in got) == list(range(300))
    assert await ingest.take(ingest.events, 1, timeout_s=0.5) == []
    rows = await _stored(ingest)
    assert len(rows) == 300
    assert all(row["dispatched_at"] is not None for row in rows)


async def test_copies_of_a_key_consumed_together_are_published_once(ingest: Ingest) -> None:
    bodies = []
    for n in range(40):
        bodies += [orjson.dumps({"type": "order.created", "data": {"n": n}, "id": f"k{n}"})] * 5
    await _publish_burst(ingest, bodies)
    got = await ingest.take(ingest.events, 40, timeout_s=30)
    assert sorted(orjson.loads(m.body)["data"]["n"] for m in got) == list(range(40))
    assert await ingest.take(ingest.events, 1, timeout_s=1.0) == []
    assert len(await _stored(ingest)) == 40


async def test_concurrent_http_copies_of_a_key_answer_the_same_event(ingest: Ingest) -> None:
    body = {"type": "invoice.paid", "data": {"amount": 1}, "id": "inv-concurrent"}
    answers = await asyncio.gather(*(ingest.call("POST", "/v1/events", body) for _ in range(8)))
    statuses = sorted(status for status, _, _ in answers)
    assert statuses == [200] * 7 + [202]
    assert len({event["id"] for _, event, _ in answers}) == 1
    assert len(await ingest.take(ingest.events, 2, timeout_s=2)) == 1


async def test_a_nul_character_rejects_only_its_own_event(ingest: Ingest) -> None:
    """Valid JSON but not storable in Postgres: rejected as invalid, naming where it is."""
    good = [orjson.dumps({"type": "order.created", "data": {"n": n}}) for n in range(20)]
    bad = b'{"type": "order.created", "data": {"s": "nul\\u0000here"}}'
    await _publish_burst(ingest, [*good[:10], bad, *good[10:]])
    got = await ingest.take(ingest.events, 20, timeout_s=30)
    assert sorted(orjson.loads(m.body)["data"]["n"] for m in got) == list(range(20))
    [rejected] = await ingest.take(await ingest.rejected_queue(), 1)
    assert rejected.body == bad
    assert rejected.headers[H_REASON] == "invalid_envelope"
    assert "data.s" in str(rejected.headers[H_ERROR])
