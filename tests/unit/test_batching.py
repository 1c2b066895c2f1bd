"""The batch writer: rows of concurrent callers share writes, and failures reach their callers."""

from __future__ import annotations

import asyncio

import pytest

from shared.batching import BatchWriter, WriterClosed


class RowError(Exception):
    pass


class FakeTable:
    """Records each write; refuses any batch holding a row named `bad`."""

    def __init__(self) -> None:
        self.writes: list[list[str]] = []
        self.down = False

    async def write(self, rows: list[str]) -> None:
        await asyncio.sleep(0)
        if self.down:
            raise ConnectionError("database down")
        if "bad" in rows:
            raise RowError("bad row")
        self.writes.append(rows)

    @property
    def rows(self) -> list[str]:
        return [r for w in self.writes for r in w]


async def started(table: FakeTable, **options: object) -> BatchWriter[str, None]:
    writer: BatchWriter[str, None] = BatchWriter(
        table.write,
        name="test",
        is_row_error=lambda exc: isinstance(exc, RowError),
        **options,  # type: ignore[arg-type]
    )
    writer.start()
    return writer


async def test_concurrent_callers_share_one_write() -> None:
    table = FakeTable()
    writer = await started(table, max_delay_s=0.05)
    await asyncio.gather(*(writer.submit([f"r{i}", f"s{i}"]) for i in range(50)))
    await writer.close()
    assert sorted(table.rows) == sorted([f"r{i}" for i in range(50)] + [f"s{i}" for i in range(50)])
    assert len(table.writes) == 1


async def test_a_full_batch_is_written_without_waiting_for_the_delay() -> None:
    table = FakeTable()
    writer = await started(table, max_rows=10, max_delay_s=60)
    async with asyncio.timeout(5):
        await writer.submit([str(i) for i in range(10)])
    await writer.close()
    assert table.writes == [[str(i) for i in range(10)]]


async def test_a_bad_row_fails_only_its_own_caller() -> None:
    table = FakeTable()
    writer = await started(table, max_delay_s=0.05)
    results = await asyncio.gather(
        writer.submit(["a"]),
        writer.submit(["b", "bad"]),
        writer.submit(["c"]),
        return_exceptions=True,
    )
    await writer.close()
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], RowError)
    assert sorted(table.rows) == ["a", "c"]


async def test_a_database_failure_reaches_every_caller() -> None:
    table = FakeTable()
    table.down = True
    writer = await started(table, max_delay_s=0.01)
    results = await asyncio.gather(
        writer.submit(["a"]), writer.submit(["b"]), return_exceptions=True
    )
    assert all(isinstance(r, ConnectionError) for r in results)
    table.down = False
    await writer.submit(["c"])
    await writer.close()
    assert table.rows == ["c"]


async def test_close_writes_what_waits_and_refuses_more() -> None:
    table = FakeTable()
    writer = await started(table, max_delay_s=60)
    pending = asyncio.create_task(writer.submit(["late"]))
    await asyncio.sleep(0.01)
    await writer.close()
    await pending
    assert table.rows == ["late"]
    with pytest.raises(WriterClosed):
        await writer.submit(["after"])


async def test_each_caller_gets_what_the_write_returned_for_its_batch() -> None:
    async def write(rows: list[str]) -> set[str]:
        return {row for row in rows if row.startswith("new")}

    writer: BatchWriter[str, set[str]] = BatchWriter(write, name="t", max_delay_s=0.01)
    writer.start()
    try:
        results = await asyncio.gather(writer.submit(["new-a", "old-b"]), writer.submit(["new-c"]))
        assert results == [{"new-a", "new-c"}] * 2
        assert await writer.submit([]) is None
    finally:
        await writer.close()


async def test_rows_that_ask_for_less_wait_cut_the_batch_sooner() -> None:
    batches: list[list[str]] = []

    async def write(rows: list[str]) -> None:
        batches.append(rows)

    writer: BatchWriter[str, None] = BatchWriter(write, name="t", max_delay_s=5.0)
    writer.start()
    try:
        slow = asyncio.create_task(writer.submit(["queued"]))
        await asyncio.sleep(0.01)
        assert batches == []  # lingering: up to 5 s for more rows
        loop = asyncio.get_running_loop()
        started = loop.time()
        await writer.submit(["answered"], max_delay_s=0.02)
        await slow
        assert loop.time() - started < 1.0  # the 20 ms cap, not the writer's 5 s
        assert batches == [["queued", "answered"]]
    finally:
        await writer.close()
