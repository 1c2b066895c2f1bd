"""Fanout on the real broker and database: who gets a delivery, once, and where bad input goes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aio_pika
import aiohttp
import asyncpg
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection

from services.fanout import publisher as publisher_module
from services.fanout.app import run
from shared.ids import delivery_id, new_id
from shared.metrics import REGISTRY
from shared.models import webhook_body
from shared.runtime import serve
from shared.settings import Settings
from shared.topology import Topology
from shared.wire.messages import (
    H_ERROR,
    H_SUBSCRIPTIONS,
    DeliveryMessage,
    EventMessage,
    deliveries_of,
)
from tests.support import ADMIN_DATABASE_URL, AMQP_URL, wait_ready
from tests.support.fanout import eventually, insert_subscription

WAIT_S = 10.0


@dataclass
class Fanout:
    """A running fanout component and what a test needs around it."""

    settings: Settings
    topology: Topology
    db: asyncpg.Connection
    channel: AbstractChannel

    async def event(
        self, event_type: str, tenant_id: str | None = None, *, stored: bool = True
    ) -> EventMessage:
        """An event as ingest would store it (unless `stored` is false) and publish it."""
        event_id = new_id("evt")
        body = webhook_body(event_type, datetime.now(UTC), {"n": 1})
        if stored:
            await self.db.execute(
                "INSERT INTO events (id, type, data, tenant_id, source)"
                " VALUES ($1, $2, '{}'::jsonb, $3, 'amqp')",
                event_id,
                event_type,
                tenant_id,
            )
        return EventMessage(event_id, event_type, tenant_id, body, accepted_at=1.5)

    async def publish(self, event: EventMessage) -> None:
        exchange = await self.channel.get_exchange(self.topology.events_exchange.name)
        await exchange.publish(
            aio_pika.Message(event.body, headers=event.headers(), delivery_mode=2),
            event.event_type,
        )

    async def take(self, queue_name: str, count: int) -> list[AbstractIncomingMessage]:
        """The next `count` messages of a queue (acked); fails when they do not come."""
        queue = await self.channel.get_queue(queue_name)
        taken: list[AbstractIncomingMessage] = []
        async with asyncio.timeout(WAIT_S):
            async with queue.iterator() as messages:
                async for message in messages:
                    await message.ack()
                    taken.append(message)
                    if len(taken) == count:
                        break
        return taken

    async def deliveries(self, count: int) -> list[DeliveryMessage]:
        """The deliveries of the messages taken (acked) until there are at least `count`
        (a batch message carries several)."""
        return await self.deliveries_until(lambda taken: len(taken) >= count)

    async def deliveries_until(
        self, enough: Callable[[list[DeliveryMessage]], bool]
    ) -> list[DeliveryMessage]:
        """Deliveries taken (acked) until `enough(taken)`; fails when they do not come."""
        queue = await self.channel.get_queue(self.topology.deliveries_queue.name)
        taken: list[DeliveryMessage] = []
        async with asyncio.timeout(WAIT_S), queue.iterator() as messages:
            async for message in messages:
                await message.ack()
                taken.extend(deliveries_of(message))
                if enough(taken):
                    break
        return taken

    async def leftover_deliveries(self) -> list[tuple[str, str, bool]]:
        """(event id, subscription id, redelivered) of deliveries still in the queue."""
        queue = await self.channel.get_queue(self.topology.deliveries_queue.name)
        left = []
        while (message := await queue.get(fail=False)) is not None:
            await message.ack()
            left.extend(
                (d.event_id, d.subscription_id, bool(message.redelivered))
                for d in deliveries_of(message)
            )
        return left

    async def queue_depth(self, queue_name: str) -> int:
        declared = await self.channel.declare_queue(queue_name, passive=True)
        count = declared.declaration_result.message_count
        assert count is not None
        return count


@pytest.fixture
async def connection() -> AsyncIterator[AbstractRobustConnection]:
    value = await aio_pika.connect_robust(AMQP_URL)
    yield value
    await value.close()


async def _start(settings: Settings, connection: AbstractRobustConnection) -> AsyncIterator[Fanout]:
    db = await asyncpg.connect(settings.database_url.get_secret_value())
    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, "fanout", [("fanout", run)], stop=stop))
    try:
        await wait_ready(settings, task)
        channel = await connection.channel()
        yield Fanout(settings, Topology(settings.namespace, settings.retry_delays), db, channel)
    finally:
        stop.set()
        assert await task == 0
        await db.close()


@pytest.fixture
async def fanout(settings: Settings, connection: AbstractRobustConnection) -> AsyncIterator[Fanout]:
    """Fanout taking one event at a time, so an event handled last was handled after all."""
    async for value in _start(settings.model_copy(update={"fanout_prefetch": 1}), connection):
        yield value


@pytest.fixture
async def fast_fanout(
    settings: Settings, connection: AbstractRobustConnection
) -> AsyncIterator[Fanout]:
    """Fanout with its default prefetch, many events in flight at once."""
    async for value in _start(settings, connection):
        yield value


def pairs(deliveries: list[DeliveryMessage]) -> set[tuple[str, str]]:
    return {(d.event_id, d.subscription_id) for d in deliveries}


async def stored_rows(db: asyncpg.Connection) -> list[Any]:
    return list(
        await db.fetch("SELECT id, event_id, subscription_id, status, attempts FROM deliveries")
    )


async def test_each_matching_subscription_gets_one_delivery(fanout: Fanout) -> None:
    db = fanout.db
    exact = await insert_subscription(db, ["invoice.paid"])
    prefix = await insert_subscription(db, ["invoice.*"])
    anything = await insert_subscription(db, ["*"])
    both = await insert_subscription(db, ["invoice.*", "invoice.paid"])
    orders = await insert_subscription(db, ["order.*"])
    await insert_subscription(db, ["invoice.paid_late"])
    await insert_subscription(db, ["invoice.paid"], status="disabled")
    await insert_subscription(db, ["*"], deleted=True)
    await insert_subscription(db, ["*"], tenant_id="acme")

    paid = await fanout.event("invoice.paid")
    added = await fanout.event("invoice.line.added")
    last = await fanout.event("order.shipped")
    for event in (paid, added, last):
        await fanout.publish(event)

    deliveries = await fanout.deliveries(4 + 3 + 2)
    assert len(deliveries) == 9
    assert pairs(deliveries) == {
        (paid.event_id, exact),
        (paid.event_id, prefix),
        (paid.event_id, anything),
        (paid.event_id, both),
        (added.event_id, prefix),
        (added.event_id, anything),
        (added.event_id, both),
        (last.event_id, anything),
        (last.event_id, orders),
    }
    assert await fanout.leftover_deliveries() == []
    by_event = {e.event_id: e for e in (paid, added, last)}
    for d in deliveries:
        assert d.delivery_id == delivery_id(d.event_id, d.subscription_id)
        assert d.attempt == 1
        assert d.event_type == by_event[d.event_id].event_type
        assert d.body == by_event[d.event_id].body
        assert d.accepted_at == 1.5
    rows = await stored_rows(db)
    assert sorted(r["id"] for r in rows) == sorted(d.delivery_id for d in deliveries)
    assert {(r["status"], r["attempts"]) for r in rows} == {("pending", 0)}


async def test_an_events_deliveries_travel_as_one_batch_message(fanout: Fanout) -> None:
    subs = [await insert_subscription(fanout.db, ["invoice.*"]) for _ in range(3)]
    single = await insert_subscription(fanout.db, ["order.*"])
    paid = await fanout.event("invoice.paid")
    shipped = await fanout.event("order.shipped")
    await fanout.publish(paid)
    await fanout.publish(shipped)

    taken = await fanout.take(fanout.topology.deliveries_queue.name, 2)
    [batch] = [m for m in taken if m.correlation_id == paid.event_id]
    [plain] = [m for m in taken if m.correlation_id == shipped.event_id]
    assert batch.message_id == f"batch.{paid.event_id}"
    assert sorted(str(batch.headers[H_SUBSCRIPTIONS]).split()) == sorted(subs)
    assert pairs(deliveries_of(batch)) == {(paid.event_id, s) for s in subs}
    # One match: a plain delivery message, as retries and redrives are.
    [delivery] = deliveries_of(plain)
    assert plain.app_id == single
    assert (delivery.event_id, delivery.subscription_id) == (shipped.event_id, single)
    assert await fanout.leftover_deliveries() == []


async def test_an_event_with_many_matches_is_split_into_batches_of_bounded_size(
    fanout: Fanout, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A header has to fit in one AMQP frame; 2 here stands for the real bound of 1,000.
    monkeypatch.setattr(publisher_module, "MAX_BATCH_SUBSCRIPTIONS", 2)
    subs = [await insert_subscription(fanout.db, ["invoice.*"]) for _ in range(5)]
    paid = await fanout.event("invoice.paid")
    await fanout.publish(paid)

    taken = await fanout.take(fanout.topology.deliveries_queue.name, 3)
    assert sorted(len(deliveries_of(m)) for m in taken) == [1, 2, 2]
    assert len({m.message_id for m in taken}) == 3
    assert sorted(d.subscription_id for m in taken for d in deliveries_of(m)) == sorted(subs)
    assert await fanout.leftover_deliveries() == []


async def test_tenant_rule_both_ways(fanout: Fanout) -> None:
    db = fanout.db
    shared_sub = await insert_subscription(db, ["*"])
    acme = await insert_subscription(db, ["invoice.*"], tenant_id="acme")
    await insert_subscription(db, ["*"], tenant_id="globex")

    of_acme = await fanout.event("invoice.paid", tenant_id="acme")
    of_nobody = await fanout.event("invoice.paid", tenant_id="initech")
    untenanted = await fanout.event("invoice.paid")
    for event in (of_acme, of_nobody, untenanted):
        await fanout.publish(event)

    deliveries = await fanout.deliveries(2)
    assert pairs(deliveries) == {(of_acme.event_id, acme), (untenanted.event_id, shared_sub)}
    assert await fanout.leftover_deliveries() == []


async def test_an_event_matching_nothing_is_consumed_without_rows(fanout: Fanout) -> None:
    sub = await insert_subscription(fanout.db, ["order.*"])
    await fanout.publish(await fanout.event("invoice.paid"))
    last = await fanout.event("order.paid")
    await fanout.publish(last)
    assert pairs(await fanout.deliveries(1)) == {(last.event_id, sub)}
    assert len(await stored_rows(fanout.db)) == 1
    assert await fanout.queue_depth(fanout.topology.fanout_queue.name) == 0


async def test_a_redelivered_event_makes_no_second_row(fanout: Fanout) -> None:
    sub = await insert_subscription(fanout.db, ["invoice.paid"])
    event = await fanout.event("invoice.paid")
    await fanout.publish(event)
    await fanout.publish(event)
    deliveries = await fanout.deliveries(2)
    # At least once: the message may go out twice, but it is the one delivery.
    assert {d.delivery_id for d in deliveries} == {delivery_id(event.event_id, sub)}
    assert len(await stored_rows(fanout.db)) == 1


async def test_a_malformed_message_goes_to_the_rejected_queue(fanout: Fanout) -> None:
    exchange = await fanout.channel.get_exchange(fanout.topology.events_exchange.name)
    await exchange.publish(
        aio_pika.Message(b'{"type":"invoice.paid"}', headers={"x-other": "kept"}),
        "invoice.paid",
    )
    [rejected] = await fanout.take(fanout.topology.fanout_rejected_queue.name, 1)
    assert rejected.body == b'{"type":"invoice.paid"}'
    assert rejected.headers["x-other"] == "kept"
    assert "x-hookline-event-id" in str(rejected.headers[H_ERROR])
    assert await fanout.queue_depth(fanout.topology.fanout_queue.name) == 0


async def test_an_unstored_event_is_rejected_without_holding_up_others(
    fast_fanout: Fanout,
) -> None:
    sub = await insert_subscription(fast_fanout.db, ["invoice.paid"])
    good = [await fast_fanout.event("invoice.paid") for _ in range(20)]
    ghost = await fast_fanout.event("invoice.paid", stored=False)
    await asyncio.gather(*(fast_fanout.publish(e) for e in [*good[:10], ghost, *good[10:]]))

    deliveries = await fast_fanout.deliveries(20)
    assert pairs(deliveries) == {(e.event_id, sub) for e in good}
    [rejected] = await fast_fanout.take(fast_fanout.topology.fanout_rejected_queue.name, 1)
    assert rejected.headers["x-hookline-event-id"] == ghost.event_id
    assert str(rejected.headers[H_ERROR]).startswith("not_stored")
    assert len(await stored_rows(fast_fanout.db)) == 20


async def test_many_events_each_reach_every_subscription_once(fast_fanout: Fanout) -> None:
    counted_before = REGISTRY.get_sample_value("hookline_fanout_deliveries_total") or 0.0
    subs = {await insert_subscription(fast_fanout.db, ["load.*"]) for _ in range(5)}
    events = [await fast_fanout.event("load.tested") for _ in range(200)]
    await asyncio.gather(*(fast_fanout.publish(e) for e in events))
    deliveries = await fast_fanout.deliveries(1000)
    assert pairs(deliveries) == {(e.event_id, s) for e in events for s in subs}
    assert len(await stored_rows(fast_fanout.db)) == 1000
    # Counted right after the confirms, which may come a moment after the messages arrive.
    await eventually(
        lambda: (
            REGISTRY.get_sample_value("hookline_fanout_deliveries_total") == counted_before + 1000
        )
    )


async def test_a_subscription_created_just_before_an_event_gets_it(fanout: Fanout) -> None:
    for _ in range(20):
        event = await fanout.event("invoice.paid")
        sub = await insert_subscription(fanout.db, ["invoice.paid"])
        await fanout.publish(event)
        [delivery] = await fanout.deliveries(1)
        assert (delivery.event_id, delivery.subscription_id) == (event.event_id, sub)
        await fanout.db.execute("UPDATE subscriptions SET deleted_at = now() WHERE id = $1", sub)


async def test_a_disabled_subscription_gets_nothing_more(fanout: Fanout) -> None:
    sub = await insert_subscription(fanout.db, ["invoice.paid"])
    other = await insert_subscription(fanout.db, ["order.*"])
    await fanout.db.execute(
        "UPDATE subscriptions SET status = 'disabled', disabled_reason = 'manual' WHERE id = $1",
        sub,
    )
    await fanout.publish(await fanout.event("invoice.paid"))
    last = await fanout.event("order.paid")
    await fanout.publish(last)
    assert pairs(await fanout.deliveries(1)) == {(last.event_id, other)}
    assert await fanout.leftover_deliveries() == []


async def _wait_readyz(settings: Settings, status: int) -> None:
    url = f"http://127.0.0.1:{settings.metrics_port}/readyz"
    async with aiohttp.ClientSession() as session, asyncio.timeout(WAIT_S):
        while True:
            async with session.get(url) as response:
                if response.status == status:
                    return
            await asyncio.sleep(0.05)


async def _wait_check(settings: Settings, name: str, value: bool) -> None:
    url = f"http://127.0.0.1:{settings.metrics_port}/readyz"
    async with aiohttp.ClientSession() as session, asyncio.timeout(WAIT_S):
        while True:
            async with session.get(url) as response:
                if (await response.json())["checks"].get(name) is value:
                    return
            await asyncio.sleep(0.05)


async def test_an_event_waits_out_a_database_outage(fanout: Fanout) -> None:
    sub = await insert_subscription(fanout.db, ["invoice.paid"])
    event = await fanout.event("invoice.paid")
    database = await fanout.db.fetchval("SELECT current_database()")
    admin = await asyncpg.connect(ADMIN_DATABASE_URL)
    try:
        await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            database,
        )
        await fanout.publish(event)
        # False only once the event was handled and failed on the database, before any
        # publish of its deliveries.
        await _wait_check(fanout.settings, "fanout_database", False)
        assert await fanout.leftover_deliveries() == []
    finally:
        await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        await admin.close()

    [delivery] = await fanout.deliveries(1)
    assert (delivery.event_id, delivery.subscription_id) == (event.event_id, sub)
    db = await asyncpg.connect(fanout.settings.database_url.get_secret_value())
    try:
        assert len(await stored_rows(db)) == 1
    finally:
        await db.close()
    await _wait_readyz(fanout.settings, 200)


async def test_stopping_midway_loses_nothing(
    settings: Settings, connection: AbstractRobustConnection
) -> None:
    expected: set[tuple[str, str]] = set()
    async for first in _start(settings, connection):
        subs = [await insert_subscription(first.db, ["load.*"]) for _ in range(3)]
        events = [await first.event("load.tested") for _ in range(300)]
        expected = {(e.event_id, s) for e in events for s in subs}
        await asyncio.gather(*(first.publish(e) for e in events))
        # Leaving the loop stops fanout with events still in flight.
    async for second in _start(settings, connection):
        await second.deliveries_until(lambda seen: pairs(seen) == expected)
        assert len(await stored_rows(second.db)) == len(expected)
        assert await second.queue_depth(second.topology.fanout_queue.name) == 0
