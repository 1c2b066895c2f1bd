"""A Postgres restart (fast shutdown, started again 3 s later) loses nothing confirmed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chaos.backends import PrivatePostgres
from chaos.run import Backends
from tests.support import AMQP_URL
from tests.support.restarts import assert_all_delivered, run_short

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


@pytest.fixture
async def private_postgres() -> AsyncIterator[PrivatePostgres]:
    """A Postgres server of this test's own (the machine's server is never restarted)."""
    postgres = PrivatePostgres()
    await asyncio.to_thread(postgres.start)
    try:
        yield postgres
    finally:
        await asyncio.to_thread(postgres.close)


async def test_every_confirmed_event_is_delivered_after_a_postgres_restart(
    private_postgres: PrivatePostgres, tmp_path: Path
) -> None:
    backends = Backends(AMQP_URL, private_postgres.admin_url, postgres=private_postgres)

    outcome = await run_short("postgres-restart", backends, tmp_path)

    assert_all_delivered(outcome, tmp_path)
