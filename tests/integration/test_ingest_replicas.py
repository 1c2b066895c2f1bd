"""Two ingest processes sharing one database and namespace still publish a key once, and a
copy of a key that another one is publishing is answered with the first event; a publish
whose record fails is still answered as accepted."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import aio_pika
import orjson
import pytest

from services.ingest.intake import Intake
from services.ingest.publisher import Publisher
from shared.amqp import declare
from shared.db import create_pool
from shared.errors import BrokerUnavailable
from shared.ids import new_id
from shared.models import EventIn
from shared.settings import Settings
from shared.stores import events as event_store
from shared.stores.events import NewEvent, StoredEvent
from shared.topology import Topology
from tests.support import AMQP_URL


@asynccontextmanager
async def _replica(settings: Settings) -> AsyncIterator[Intake]:
    """One ingest's intake: a pool and a confirming publisher of its own."""
    topology = Topology(settings.namespace, settings.retry_delays)
    async with AsyncExitStack() as stack:
        pool = await create_pool(settings.database_url.get_secret_value(), size=4)
        stack.push_async_callback(pool.close)
        connection = await aio_pika.connect(AMQP_URL)
        stack.push_async_callback(connection.close)
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        exchanges, _ = await declare(channel, *topology.for_ingest())
        intake = Intake(pool, Publisher(channel, topology, exchanges))
        intake.start()
        stack.push_async_callback(intake.close)
        yield intake


async def _accept_until_done(intake: Intake, event: EventIn) -> str:
    """Accept as a caller would: try again while the answer is "try again"."""
    for _ in range(100):
        try:
            return (await intake.accept(event, "http")).event.id
        except BrokerUnavailable:
            await asyncio.sleep(0.1)
    raise AssertionError("never accepted")


async def test_two_ingests_given_the_same_keys_at_once_publish_each_once(
    settings: Settings,
) -> None:
    topology = Topology(settings.namespace, settings.retry_delays)
    connection = await aio_pika.connect(AMQP_URL)
    async with connection, _replica(settings) as one, _replica(settings) as two:
        channel = await connection.channel()
        observed = await channel.declare_queue(exclusive=True)
        await observed.bind(topology.events_exchange.name, "#")
        events = [EventIn(type="order.created", data={"n": n}, id=f"key-{n}") for n in range(30)]
        ids = await asyncio.gather(
            *(_accept_until_done(intake, e) for e in events for intake in (one, two))
        )
        # Both callers of a key hear of the same event.
        assert ids[0::2] == ids[1::2]
        published: list[int] = []
        while (message := await observed.get(no_ack=True, fail=False, timeout=5)) is not None:
            published.append(orjson.loads(message.body)["data"]["n"])
        assert sorted(published) == list(range(30))


@asynccontextmanager
async def _claimed_elsewhere(settings: Settings, event: EventIn) -> AsyncIterator[StoredEvent]:
    """`event` stored by another ingest process, which holds its claim and is publishing it;
    the test marks it dispatched when that process would."""
    pool = await create_pool(settings.database_url.get_secret_value(), size=1)
    try:
        [(stored, claim)] = await event_store.insert_many(
            pool, [NewEvent(new_id("evt"), event, "http")]
        )
        assert claim is not None
        yield stored
    finally:
        await pool.close()


async def test_a_copy_arriving_while_another_ingest_publishes_gets_the_first_event(
    settings: Settings,
) -> None:
    event = EventIn(type="order.created", data={"n": 1}, id="key-busy")
    async with _claimed_elsewhere(settings, event) as first, _replica(settings) as intake:
        answer = asyncio.create_task(intake.accept(event, "http"))
        await asyncio.sleep(0.5)
        assert not answer.done(), "answered before the other ingest finished publishing"
        pool = await create_pool(settings.database_url.get_secret_value(), size=1)
        async with pool:
            await event_store.mark_dispatched(pool, [first.id])
        accepted = await answer
    assert accepted.duplicate
    assert accepted.event.id == first.id
    assert accepted.event.dispatched_at is not None


async def test_a_copy_whose_first_stays_unpublished_is_told_to_try_again(
    settings: Settings,
) -> None:
    event = EventIn(type="order.created", data={"n": 2}, id="key-stuck")
    async with _claimed_elsewhere(settings, event), _replica(settings) as intake:
        with pytest.raises(BrokerUnavailable):
            await intake.accept(event, "http")


async def test_an_event_published_whose_dispatch_record_fails_is_accepted(
    settings: Settings,
) -> None:
    topology = Topology(settings.namespace, settings.retry_delays)
    pool = await create_pool(settings.database_url.get_secret_value(), size=1)
    async with pool:
        # A Postgres error that is no outage, raised only by the UPDATE recording the dispatch.
        await pool.execute(
            """
            CREATE FUNCTION refuse_dispatch() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'dispatch refused by test'; END $$;
            CREATE TRIGGER refuse_dispatch BEFORE UPDATE OF dispatched_at ON events
            FOR EACH ROW EXECUTE FUNCTION refuse_dispatch();
            """
        )
    connection = await aio_pika.connect(AMQP_URL)
    async with connection, _replica(settings) as intake:
        channel = await connection.channel()
        observed = await channel.declare_queue(exclusive=True)
        await observed.bind(topology.events_exchange.name, "#")
        event = EventIn(type="order.created", data={"n": 3}, id="key-unrecorded")
        accepted = await intake.accept(event, "http")
        assert not accepted.duplicate
        message = await observed.get(no_ack=True, timeout=5)
        assert orjson.loads(message.body)["data"] == {"n": 3}
