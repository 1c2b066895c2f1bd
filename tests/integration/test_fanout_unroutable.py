"""Fanout never drops deliveries that no queue takes (the deliveries queue deleted by hand)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import cast

import aio_pika

from shared.settings import Settings
from tests.integration.test_fanout import Fanout, _start, stored_rows
from tests.support import AMQP_URL
from tests.support.fanout import insert_subscription


async def test_an_event_whose_deliveries_queue_is_gone_stays_queued(settings: Settings) -> None:
    connection = await aio_pika.connect_robust(AMQP_URL)
    try:
        running = cast(
            AsyncGenerator[Fanout, None],
            _start(settings.model_copy(update={"fanout_prefetch": 1}), connection),
        )
        fanout = await anext(running)
        topology = fanout.topology
        await insert_subscription(fanout.db, ["invoice.paid"])
        await fanout.channel.queue_delete(topology.deliveries_queue.name)
        event = await fanout.event("invoice.paid")
        await fanout.publish(event)
        # Its row is written just before its deliveries are published: fanout has it.
        for _ in range(500):
            if await stored_rows(fanout.db):
                break
            await asyncio.sleep(0.02)
        # Stopping drains the event in hand: it must end back in its queue, not acked away.
        await running.aclose()
        assert await fanout.queue_depth(topology.fanout_queue.name) == 1
    finally:
        await connection.close()
