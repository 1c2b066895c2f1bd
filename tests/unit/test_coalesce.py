"""Concurrent misses share one load; a load starts after its callers asked."""

from __future__ import annotations

import asyncio

import pytest

from shared.coalesce import Coalescer


class Loads:
    """A load that records its calls and can be held until released."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail: Exception | None = None

    async def __call__(self, keys: list[str]) -> dict[str, int]:
        self.calls.append(sorted(keys))
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return {k: len(k) for k in keys if not k.startswith("missing")}


async def test_concurrent_callers_share_one_load() -> None:
    loads = Loads()
    coalescer = Coalescer(loads, name="t")
    results = await asyncio.gather(*(coalescer.get([f"k{i}", "shared"]) for i in range(50)))
    assert len(loads.calls) == 1
    assert len(loads.calls[0]) == 51
    assert results[7] == {"k7": 2, "shared": 6}


async def test_callers_during_a_load_wait_for_the_next_one() -> None:
    loads = Loads()
    loads.gate.clear()
    coalescer = Coalescer(loads, name="t")
    first = asyncio.create_task(coalescer.get(["a"]))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert loads.calls == [["a"]]
    # Asked while "a" is being read: even "a" again must be read anew, after this call.
    later = [asyncio.create_task(coalescer.get(["a", key])) for key in ("bb", "ccc")]
    await asyncio.sleep(0)
    loads.gate.set()
    assert await first == {"a": 1}
    assert [await t for t in later] == [{"a": 1, "bb": 2}, {"a": 1, "ccc": 3}]
    assert loads.calls == [["a"], ["a", "bb", "ccc"]]


async def test_keys_not_found_are_absent() -> None:
    coalescer = Coalescer(Loads(), name="t")
    assert await coalescer.get(["missing-1", "x"]) == {"x": 1}
    assert await coalescer.get([]) == {}


async def test_a_failed_load_fails_its_callers_and_the_next_load_runs() -> None:
    loads = Loads()
    loads.fail = RuntimeError("db down")
    coalescer = Coalescer(loads, name="t")
    outcomes = await asyncio.gather(
        coalescer.get(["a"]), coalescer.get(["b"]), return_exceptions=True
    )
    assert [str(o) for o in outcomes] == ["db down", "db down"]
    loads.fail = None
    assert await coalescer.get(["a"]) == {"a": 1}


async def test_a_cancelled_caller_does_not_cancel_the_load_of_the_others() -> None:
    loads = Loads()
    loads.gate.clear()
    coalescer = Coalescer(loads, name="t")
    impatient = asyncio.create_task(coalescer.get(["a"]))
    patient = asyncio.create_task(coalescer.get(["b"]))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    impatient.cancel()
    loads.gate.set()
    assert await patient == {"b": 1}
    with pytest.raises(asyncio.CancelledError):
        await impatient


async def test_close_cancels_the_waiting_callers() -> None:
    loads = Loads()
    loads.gate.clear()
    coalescer = Coalescer(loads, name="t")
    waiting = asyncio.create_task(coalescer.get(["a"]))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    await coalescer.close()
    with pytest.raises(asyncio.CancelledError):
        await waiting
