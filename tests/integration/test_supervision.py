"""A side task that dies stops the process non-zero; liveness turns 503 after its bound."""

from __future__ import annotations

import asyncio
import os
import sys
import textwrap
from pathlib import Path

from shared.ops import Liveness, Readiness
from tests.support import free_port


async def test_a_dying_side_task_stops_the_process_with_exit_1(tmp_path: Path) -> None:
    drained = tmp_path / "drained"
    script = tmp_path / "svc.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import asyncio, sys
            from shared.runtime import run_service
            from shared.supervision import spawn

            async def flusher():
                await asyncio.sleep(0.3)
                raise RuntimeError("the attempt log flusher broke")

            async def component(settings, stop, readiness):
                readiness.add("up", lambda: True)
                spawn(flusher(), name="attempt-log-flusher")
                await stop.wait()
                open({str(drained)!r}, "w").close()

            sys.exit(run_service("sender", [("worker", component)]))
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKLINE_")}
    env["HOOKLINE_METRICS_PORT"] = str(free_port())
    env["HOOKLINE_LOG_FORMAT"] = "json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script), env=env, cwd=tmp_path, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1
    log = err.decode()
    assert '"event": "side_task_failed"' in log and "attempt-log-flusher" in log
    # It stopped the way SIGTERM does: the component drained first.
    assert drained.exists()


def test_liveness_fails_only_once_a_check_stayed_false_past_the_bound() -> None:
    now = [0.0]
    state = {"consuming": True}
    readiness = Readiness()
    readiness.add("consuming", lambda: state["consuming"])
    liveness = Liveness(readiness, bound_s=60.0, clock=lambda: now[0])
    assert liveness.overdue() == {}
    state["consuming"] = False
    liveness.sample()
    now[0] = 59.0
    assert liveness.overdue() == {}
    now[0] = 61.0
    assert liveness.overdue() == {"consuming": 61.0}
    # Back for a moment: the clock starts over.
    state["consuming"] = True
    liveness.sample()
    state["consuming"] = False
    now[0] = 100.0
    assert liveness.overdue() == {}
