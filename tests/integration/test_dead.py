"""`hookline dead list` and `hookline dead redrive`, on deliveries that really died."""

from __future__ import annotations

import argparse
import asyncio
import io

import aio_pika
import pytest

from services.cli.dead import main
from services.sender.dead import list_dead, redrive
from shared.settings import Settings
from shared.topology import SEND_ROUTING_KEY, Topology
from shared.wire.properties import json_message
from tests.support import AMQP_URL
from tests.support.sender import (
    Answer,
    Receiver,
    database,
    insert_delivery,
    insert_subscription,
    publish,
    queue_messages,
    sender_running,
    wait_for_status,
)


async def publish_malformed(settings: Settings) -> None:
    topology = Topology(settings.namespace, settings.retry_delays)
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        exchange = await channel.get_exchange(topology.deliveries_exchange.name)
        await exchange.publish(json_message(b"{}", headers={}), routing_key=SEND_ROUTING_KEY)
    finally:
        await connection.close()


async def test_dead_deliveries_are_listed_and_redriven(settings: Settings) -> None:
    dead_queue = Topology(settings.namespace, ()).dead_queue.name
    # Three failures exhaust the schedule; the fourth request (the redrive) succeeds.
    first = Receiver(Answer(500), Answer(500), Answer(500), Answer(200))
    second = Receiver(Answer(500))
    async with (
        first.running(),
        second.running(),
        database(settings) as conn,
        sender_running(settings),
    ):
        first_id, _ = await insert_subscription(conn, first.url())
        second_id, _ = await insert_subscription(conn, second.url())
        one = await insert_delivery(conn, first_id)
        two = await insert_delivery(conn, second_id)
        await publish(settings, one, two)
        await publish_malformed(settings)
        await wait_for_status(conn, one.delivery_id, "failed")
        await wait_for_status(conn, two.delivery_id, "failed")

        listed = await list_dead(settings, limit=10)
        assert len(await queue_messages(settings, dead_queue)) == 3

        report = await redrive(settings, subscription_id=first_id)
        row = await wait_for_status(conn, one.delivery_id, "succeeded")

    assert sorted((e.delivery_id or "", e.attempts or 0) for e in listed) == sorted(
        [(one.delivery_id, 3), (two.delivery_id, 3), ("", 0)]
    )
    assert any(e.error.startswith("malformed") for e in listed)
    assert report.redriven == [one.delivery_id] and report.kept == 2
    assert row["attempts"] == 4
    assert first.requests[-1].headers["webhook-id"] == one.event_id
    remaining = await queue_messages(settings, dead_queue)
    assert [h.get("x-hookline-delivery-id") for h in remaining].count(two.delivery_id) == 1
    assert len(remaining) == 2


async def test_the_cli_lists_without_consuming(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    await publish(settings)  # declares the topology
    await publish_malformed(settings)
    async with sender_running(settings):
        dead_queue = Topology(settings.namespace, ()).dead_queue.name
        for _ in range(100):
            if await queue_messages(settings, dead_queue):
                break
            await asyncio.sleep(0.05)
    for name, value in {
        "HOOKLINE_NAMESPACE": settings.namespace,
        "HOOKLINE_AMQP_URL": settings.amqp_url.get_secret_value(),
        "HOOKLINE_DATABASE_URL": settings.database_url.get_secret_value(),
        "HOOKLINE_RETRY_DELAYS": "200ms,400ms",
        "HOOKLINE_LOG_FORMAT": "console",
    }.items():
        monkeypatch.setenv(name, value)
    out = io.StringIO()
    args = argparse.Namespace(dead_command="list", limit=10)

    assert await asyncio.to_thread(main, args, out) == 0

    assert "error=malformed" in out.getvalue()
    assert "1 dead deliveries listed" in out.getvalue()
    assert len(await queue_messages(settings, dead_queue)) == 1
