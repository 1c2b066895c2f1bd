"""The consumer runtime alone: its ack policy, and consuming again after a channel error or
the queue being deleted under it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aio_pika
import aiormq
import pytest
from aio_pika.abc import AbstractIncomingMessage

from shared.consuming import Consumer
from shared.errors import StorageUnavailable
from shared.settings import Settings
from shared.topology import Queue
from tests.support import AMQP_URL

WAIT_S = 30.0


class Recorder:
    """A handler that records bodies, failing with an outage while `down` is set."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.calls = 0
        self.down = False
        self.changed = asyncio.Condition()

    async def __call__(self, message: AbstractIncomingMessage) -> None:
        self.calls += 1
        if self.down:
            raise StorageUnavailable("database down")
        async with self.changed:
            self.bodies.append(message.body)
            self.changed.notify_all()

    async def wait_for(self, body: bytes) -> None:
        async with asyncio.timeout(WAIT_S), self.changed:
            await self.changed.wait_for(lambda: body in self.bodies)


@pytest.fixture
async def channel() -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    connection = await aio_pika.connect(AMQP_URL)
    yield await connection.channel()
    await connection.close()


async def publish(channel: aio_pika.abc.AbstractChannel, queue: str, body: bytes) -> None:
    await channel.default_exchange.publish(aio_pika.Message(body), queue)


async def counts(channel: aio_pika.abc.AbstractChannel, queue: str) -> tuple[int, int]:
    """(ready messages, consumers) of `queue`."""
    declared = await channel.declare_queue(queue, passive=True)
    result = declared.declaration_result
    return result.message_count or 0, result.consumer_count or 0


async def test_consumes_again_after_a_channel_error_and_after_its_queue_is_deleted(
    settings: Settings, channel: aio_pika.abc.AbstractChannel
) -> None:
    queue = Queue(f"{settings.namespace}.consuming-test")
    handler = Recorder()
    consumer = Consumer(settings, "test-consume", queue, handler, prefetch=10)
    await consumer.start()
    try:
        await publish(channel, queue.name, b"one")
        await handler.wait_for(b"one")

        # A channel error: the broker closes the consumer's channel (404 on a passive declare).
        assert consumer._channel is not None
        with pytest.raises(aiormq.exceptions.ChannelNotFoundEntity):
            await consumer._channel.declare_queue(f"{queue.name}.missing", passive=True)
        await publish(channel, queue.name, b"two")
        await handler.wait_for(b"two")

        # The queue deleted by hand: the broker cancels the consumer; it declares it again.
        await channel.queue_delete(queue.name)
        async with asyncio.timeout(WAIT_S):
            while True:
                with_consumer = consumer.consuming and consumer.restores >= 2
                if with_consumer:
                    try:
                        if (await counts(channel, queue.name))[1] == 1:
                            break
                    except aiormq.exceptions.ChannelNotFoundEntity:
                        channel = await channel.channel.connection.channel()  # type: ignore[attr-defined]
                await asyncio.sleep(0.05)
        await publish(channel, queue.name, b"three")
        await handler.wait_for(b"three")
        # At least once: a message whose ack had not gone out when its channel died comes
        # again; none is missing.
        assert set(handler.bodies) == {b"one", b"two", b"three"}
    finally:
        await consumer.stop(1.0)
        await channel.queue_delete(queue.name)


async def test_an_outage_holds_the_message_without_requeueing_it(
    settings: Settings, channel: aio_pika.abc.AbstractChannel
) -> None:
    queue = Queue(f"{settings.namespace}.holding-test")
    handler = Recorder()
    handler.down = True
    consumer = Consumer(settings, "test-hold", queue, handler, prefetch=10)
    await consumer.start()
    try:
        await publish(channel, queue.name, b"held")
        await publish(channel, queue.name, b"waiting")
        async with asyncio.timeout(WAIT_S):
            while handler.calls < 3:  # noqa: ASYNC110 - counting calls
                await asyncio.sleep(0.05)
        # Tried again in hand (never handed back to the queue), and the other message waits
        # for the outage to end instead of failing too.
        ready, _ = await counts(channel, queue.name)
        assert ready == 0
        handler.down = False
        await handler.wait_for(b"held")
        await handler.wait_for(b"waiting")
    finally:
        await consumer.stop(1.0)
    # Both acked: nothing comes back.
    assert await counts(channel, queue.name) == (0, 0)
    await channel.queue_delete(queue.name)


async def test_a_publisher_channel_is_reopened_after_a_channel_error(
    settings: Settings, channel: aio_pika.abc.AbstractChannel
) -> None:
    """Publishers rely on the robust connection: after the broker closed their channel for
    an error, the next confirmed publish goes through on a reopened channel."""
    from shared.amqp import connect, declare
    from shared.wire.publish import publish_confirmed

    connection = await connect(settings, "test-publish")
    try:
        publishing = await connection.channel(publisher_confirms=True, on_return_raises=True)
        queue = Queue(f"{settings.namespace}.publish-test")
        await declare(publishing, [], [queue])
        with pytest.raises(aiormq.exceptions.ChannelNotFoundEntity):
            await publishing.declare_exchange(f"{settings.namespace}.missing", passive=True)

        async def published() -> None:
            message = aio_pika.Message(b"x")
            await publish_confirmed(publishing.default_exchange, message, queue.name)

        async with asyncio.timeout(WAIT_S):
            while True:
                try:
                    await published()
                    break
                except Exception:  # the channel is being reopened
                    await asyncio.sleep(0.1)
        # Counted on the test's own channel: a robust channel answers a passive declare
        # from its cache.
        ready, _ = await counts(channel, queue.name)
        assert ready == 1
        await channel.queue_delete(queue.name)
    finally:
        await connection.close()
