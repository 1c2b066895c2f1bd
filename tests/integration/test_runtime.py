"""The service runtime: ops endpoints, readiness, stop on signal or on a failed component."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from pathlib import Path

import aiohttp
import pytest

from shared.ops import Readiness
from shared.runtime import serve
from shared.settings import Settings
from tests.support import free_port


async def get(port: int, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}{path}") as answer:
            return answer.status, await answer.text()


async def wait_until_answers(port: int) -> None:
    for _ in range(100):
        try:
            await get(port, "/healthz")
            return
        except aiohttp.ClientConnectionError:
            await asyncio.sleep(0.05)
    raise AssertionError(f"nothing answers on {port}")


async def test_ready_only_while_every_check_holds(settings: Settings) -> None:
    stop = asyncio.Event()
    connected = {"broker": False}

    async def component(_: Settings, stop: asyncio.Event, readiness: Readiness) -> None:
        readiness.add("broker", lambda: connected["broker"])
        await stop.wait()

    port = settings.metrics_port_for("ingest")
    served = asyncio.create_task(serve(settings, "ingest", [("c", component)], stop=stop))
    await wait_until_answers(port)
    assert (await get(port, "/healthz"))[0] == 200
    assert (await get(port, "/readyz"))[0] == 503
    connected["broker"] = True
    status, body = await get(port, "/readyz")
    assert status == 200 and '"broker":true' in body.replace(" ", "")
    connected["broker"] = False
    assert (await get(port, "/readyz"))[0] == 503
    stop.set()
    assert await served == 0


async def test_metrics_are_served_in_prometheus_text(settings: Settings) -> None:
    stop = asyncio.Event()

    async def component(_: Settings, stop: asyncio.Event, __: Readiness) -> None:
        await stop.wait()

    port = settings.metrics_port_for("sender")
    served = asyncio.create_task(serve(settings, "sender", [("c", component)], stop=stop))
    await wait_until_answers(port)
    status, text = await get(port, "/metrics")
    stop.set()
    await served
    assert status == 200
    for name in (
        "hookline_events_ingested_total",
        "hookline_delivery_attempts_total",
        "hookline_delivery_duration_seconds",
        "hookline_end_to_end_seconds",
        "hookline_dead_lettered_total",
    ):
        assert f"# TYPE {name.removesuffix('_total')}" in text, name


async def test_a_failed_component_stops_the_others_and_fails_the_process(
    settings: Settings,
) -> None:
    saw_stop = asyncio.Event()

    async def steady(_: Settings, stop: asyncio.Event, __: Readiness) -> None:
        await stop.wait()
        saw_stop.set()

    async def broken(_: Settings, __: asyncio.Event, ___: Readiness) -> None:
        raise RuntimeError("cannot start")

    code = await serve(settings, "all", [("steady", steady), ("broken", broken)])
    assert code == 1
    assert saw_stop.is_set()


async def test_sigterm_drains_then_exits_0(tmp_path: Path) -> None:
    """A process under `run_service` stops on SIGTERM after its component finished draining."""
    drained = tmp_path / "drained"
    script = tmp_path / "svc.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import asyncio, sys
            from shared.runtime import run_service

            async def component(settings, stop, readiness):
                readiness.add("up", lambda: True)
                print("ready", flush=True)
                await stop.wait()
                await asyncio.sleep(0.2)  # in-flight work finishing
                open({str(drained)!r}, "w").close()

            sys.exit(run_service("sender", [("worker", component)]))
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKLINE_")}
    env["HOOKLINE_METRICS_PORT"] = str(free_port())
    await _run_and_terminate(script, env, tmp_path)
    assert drained.exists()


async def _run_and_terminate(script: Path, env: dict[str, str], cwd: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script), env=env, cwd=cwd, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    assert line.strip() == b"ready"
    await wait_until_answers(int(env["HOOKLINE_METRICS_PORT"]))
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 30) == 0


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
async def test_ops_paths_need_no_token(settings: Settings, path: str) -> None:
    stop = asyncio.Event()

    async def component(_: Settings, stop: asyncio.Event, readiness: Readiness) -> None:
        readiness.add("up", lambda: True)
        await stop.wait()

    port = settings.metrics_port_for("fanout")
    served = asyncio.create_task(serve(settings, "fanout", [("c", component)], stop=stop))
    await wait_until_answers(port)
    status, _ = await get(port, path)
    stop.set()
    await served
    assert status == 200
