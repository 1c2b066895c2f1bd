"""A RabbitMQ restart (`stop_app; sleep 3; start_app`) loses nothing that was confirmed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chaos.backends import PrivateRabbit
from chaos.run import Backends
from tests.support import ADMIN_DATABASE_URL
from tests.support.restarts import assert_all_delivered, run_short

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


@pytest.fixture
async def private_rabbit() -> AsyncIterator[PrivateRabbit]:
    """A RabbitMQ node of this test's own (the machine's node is never restarted)."""
    rabbit = PrivateRabbit(1)
    await asyncio.to_thread(rabbit.start)
    try:
        yield rabbit
    finally:
        await asyncio.to_thread(rabbit.close)


async def test_every_confirmed_event_is_delivered_after_a_broker_app_restart(
    private_rabbit: PrivateRabbit, tmp_path: Path
) -> None:
    backends = Backends(private_rabbit.amqp_url, ADMIN_DATABASE_URL, rabbit=private_rabbit)

    outcome = await run_short("broker-app-restart", backends, tmp_path)

    assert_all_delivered(outcome, tmp_path)
