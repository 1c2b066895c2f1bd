"""Fixtures shared by all tests: a migrated template database, and per-test isolation."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator

import pytest

from shared.db import migrate
from shared.settings import Settings
from tests.support import (
    create_database_from_template,
    database_url,
    delete_namespace,
    drop_database,
    make_settings,
    unique_name,
)


@pytest.fixture(scope="session")
def template_database() -> Iterator[str]:
    """A database migrated once per test session; each test clones it (fast, isolated)."""
    name = f"hookline_tmpl_{os.getpid()}"
    asyncio.run(drop_database(name))
    asyncio.run(migrate(database_url(name)))
    yield name
    asyncio.run(drop_database(name))


@pytest.fixture
async def fresh_database(template_database: str) -> AsyncIterator[str]:
    """The name of a new migrated database, dropped after the test."""
    name = unique_name("hookline_test_")
    await create_database_from_template(name, template_database)
    yield name
    await drop_database(name)


@pytest.fixture
async def settings(fresh_database: str) -> AsyncIterator[Settings]:
    """Settings of an isolated run: unique namespace, fresh database, free ports."""
    namespace = unique_name("t")
    value = make_settings(namespace, fresh_database)
    yield value
    await delete_namespace(namespace, value.retry_delays)
