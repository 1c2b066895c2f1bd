"""AsyncNotifier against the real broker: confirmed, persistent, mandatory, reconnecting."""

from __future__ import annotations

import asyncio
import json

import aio_pika
import pytest
from conftest import AMQP_URL, Ingest, close_connections_named, unique
from hookline_client import AsyncNotifier, Event, PublishError


async def test_notify_publishes_the_ingest_envelope_persistently(ingest: Ingest) -> None:
    async with AsyncNotifier(AMQP_URL, namespace=ingest.namespace) as notifier:
        key = await notifier.notify(
            "invoice.paid", {"invoice_id": "in_1"}, id="in_1-paid", tenant_id="acme"
        )
        fresh = await notifier.notify("invoice.voided", {"invoice_id": "in_2"})
    assert key == "in_1-paid"
    assert fresh.startswith("hl_")
    first, second = await ingest.take(2)
    assert json.loads(first.body) == {
        "type": "invoice.paid",
        "data": {"invoice_id": "in_1"},
        "id": "in_1-paid",
        "tenant_id": "acme",
    }
    assert first.routing_key == "invoice.paid"
    assert first.content_type == "application/json"
    assert first.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert json.loads(second.body)["id"] == fresh


async def test_notify_many_returns_the_keys_in_order(ingest: Ingest) -> None:
    events = [Event("order.placed", {"n": i}, id=f"o-{i}") for i in range(50)]
    async with AsyncNotifier(AMQP_URL, namespace=ingest.namespace) as notifier:
        keys = await notifier.notify_many([*events, {"type": "order.shipped", "data": {}}])
    assert keys[:50] == [f"o-{i}" for i in range(50)]
    taken = await ingest.take(51)
    assert sorted(json.loads(m.body)["id"] for m in taken) == sorted(keys)


async def test_an_event_no_queue_takes_raises_unroutable(ingest: Ingest) -> None:
    await ingest.queue.unbind(ingest.exchange, "#")
    await ingest.queue.bind(ingest.exchange, "order.*")
    async with AsyncNotifier(AMQP_URL, namespace=ingest.namespace, timeout_s=5) as notifier:
        with pytest.raises(PublishError, match="unroutable") as caught:
            await notifier.notify("invoice.paid", {}, id="lost-1")
        assert caught.value.reason == "unroutable" and caught.value.key == "lost-1"
        with pytest.raises(PublishError) as many:
            await notifier.notify_many(
                [
                    Event("order.placed", id="ok-1"),
                    Event("user.created", id="no-1"),
                    Event("order.placed", id="ok-2"),
                    Event("user.deleted", id="no-2"),
                ]
            )
        # The channel is still usable after a return.
        await notifier.notify("order.shipped", {}, id="ok-3")
    assert many.value.reason == "unroutable"
    assert many.value.key == "no-1"
    assert many.value.confirmed == ["ok-1", "ok-2"]
    assert many.value.failed == ["no-1", "no-2"]
    assert "2 of 4 not confirmed" in str(many.value)
    taken = await ingest.take(3)
    assert [json.loads(m.body)["id"] for m in taken] == ["ok-1", "ok-2", "ok-3"]


async def test_a_namespace_without_hookline_raises_unroutable() -> None:
    notifier = AsyncNotifier(AMQP_URL, namespace=unique("nothing"), timeout_s=5)
    with pytest.raises(
        PublishError, match=r"unroutable: .*exchange nothing\w+\.ingest does not exist"
    ):
        await notifier.notify("invoice.paid", {})
    await notifier.close()


async def test_no_broker_raises_unreachable_within_the_bound() -> None:
    notifier = AsyncNotifier("amqp://guest:guest@127.0.0.1:1/", timeout_s=1)
    with pytest.raises(
        PublishError, match=r"unreachable: .*cannot reach the broker within 1s"
    ) as caught:
        await notifier.notify("invoice.paid", {}, id="k-1")
    assert caught.value.key == "k-1"
    await notifier.close()


async def test_a_connection_closed_between_two_calls_is_restored(ingest: Ingest) -> None:
    name = unique("client-test-")
    async with AsyncNotifier(AMQP_URL, ingest.namespace, connection_name=name) as notifier:
        await notifier.notify("invoice.paid", {"n": 1}, id="before")
        assert await asyncio.to_thread(close_connections_named, name) == 1
        await notifier.notify("invoice.paid", {"n": 2}, id="after")
    taken = await ingest.take(2)
    assert sorted(json.loads(m.body)["id"] for m in taken) == ["after", "before"]


async def test_a_closed_notifier_refuses_calls(ingest: Ingest) -> None:
    notifier = AsyncNotifier(AMQP_URL, ingest.namespace)
    await notifier.notify("invoice.paid", {})
    await notifier.close()
    with pytest.raises(RuntimeError, match="closed"):
        await notifier.notify("invoice.paid", {})
