"""Fixtures of the client's own tests: the real RabbitMQ and Postgres, nothing of Hookline.

An `ingest` fixture stands in for Hookline's ingest: the `{ns}.ingest` exchange with one
queue bound to every type, so that what the client published can be read back. These tests
run in a virtualenv holding only hookline-client (see test_client_fresh_venv.py).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage

AMQP_URL = os.environ.get("HOOKLINE_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
ADMIN_DATABASE_URL = os.environ.get(
    "HOOKLINE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


@dataclass
class Ingest:
    """A namespace whose `{ns}.ingest` exchange routes every type to `queue`."""

    namespace: str
    channel: aio_pika.abc.AbstractChannel
    exchange: aio_pika.abc.AbstractExchange
    queue: aio_pika.abc.AbstractQueue

    async def take(self, count: int, timeout_s: float = 20.0) -> list[AbstractIncomingMessage]:
        """Wait for `count` messages and take them, plus any already waiting beyond them."""
        taken: list[AbstractIncomingMessage] = []
        async with asyncio.timeout(timeout_s):
            while len(taken) < count:
                message = await self.queue.get(no_ack=True, fail=False)
                if message is None:
                    await asyncio.sleep(0.05)
                    continue
                taken.append(message)
        return taken + await self.take_waiting()

    async def take_waiting(self) -> list[AbstractIncomingMessage]:
        taken = []
        while (message := await self.queue.get(no_ack=True, fail=False)) is not None:
            taken.append(message)
        return taken


@pytest.fixture
async def ingest() -> AsyncIterator[Ingest]:
    namespace = unique("client")
    connection = await aio_pika.connect(AMQP_URL)
    channel = await connection.channel()
    exchange = await channel.declare_exchange(
        f"{namespace}.ingest", aio_pika.ExchangeType.TOPIC, durable=True
    )
    queue = await channel.declare_queue(f"{namespace}.ingest", durable=True)
    await queue.bind(exchange, "#")
    try:
        yield Ingest(namespace, channel, exchange, queue)
    finally:
        await channel.queue_delete(queue.name)
        await channel.exchange_delete(exchange.name)
        await connection.close()


def database_url(name: str) -> str:
    return urlunsplit(urlsplit(ADMIN_DATABASE_URL)._replace(path=f"/{name}"))


@pytest.fixture
async def producer_db() -> AsyncIterator[str]:
    """The URL of a new, empty database: a producer's, where the outbox lives."""
    import asyncpg

    name = unique("producer_")
    admin = await asyncpg.connect(ADMIN_DATABASE_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield database_url(name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def close_connections_named(name: str) -> int:
    """Close, from the broker's side, every connection whose client gave it `name`."""
    listing = subprocess.run(
        ["rabbitmqctl", "-q", "list_connections", "pid", "client_properties"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    pids = [line.split("\t")[0] for line in listing.splitlines() if f'"{name}"' in line]
    for pid in pids:
        subprocess.run(
            ["rabbitmqctl", "-q", "close_connection", pid, "test: broker outage"],
            capture_output=True,
            check=True,
            timeout=60,
        )
    return len(pids)
