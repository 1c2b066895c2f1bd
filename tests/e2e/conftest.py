"""Fixtures of the end-to-end tests: stacks of real processes and a real HTTP receiver."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from tests.support.receiver import Receiver
from tests.support.stack import SERVICES, Stack

StackFactory = Callable[..., Stack]


def _close(stack: Stack) -> None:
    problems = stack.close()
    if problems:
        pytest.fail("; ".join(problems) + "\n" + stack.log_text()[-6000:], pytrace=False)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """ingest, fanout and sender as three processes, shared by the tests of a module.

    Tests that share it isolate themselves with their own tenant id and event types.
    """
    value = Stack(tmp_path_factory.mktemp("stack"))
    try:
        value.migrate()
        value.start_all()
    except BaseException:
        value.close()
        raise
    yield value
    _close(value)


@pytest.fixture
def stack_factory(tmp_path: Path) -> Iterator[StackFactory]:
    """Makes stacks of their own for one test: `stack_factory(services=..., env={...})`.

    Each is migrated and started; on teardown every process gets SIGTERM and must exit 0.
    """
    made: list[Stack] = []

    def make(services: Sequence[str] = SERVICES, env: Mapping[str, str] | None = None) -> Stack:
        value = Stack(tmp_path / f"stack{len(made)}", env_overrides=dict(env or {}))
        value.workdir.mkdir()
        made.append(value)
        value.migrate()
        value.start_all(services)
        return value

    yield make
    for value in reversed(made):
        _close(value)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A real aiohttp server on 127.0.0.1 that records every request."""
    value = Receiver()
    await value.start()
    yield value
    await value.close()
