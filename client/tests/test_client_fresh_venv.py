"""hookline-client installs alone into a fresh virtualenv, works there, and passes its tests.

`pip install ./client` into an empty virtualenv must bring aio-pika and nothing of Hookline's
server (no asyncpg either, outside the `outbox` extra). Then, with the extra and pytest
added, the client's own tests run against that installed copy, not this source tree.
Packages come from pip's cache, so this takes seconds once the cache is warm; the virtualenv
has no pip of its own, the running interpreter's pip installs into it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import pytest

CLIENT_DIR = Path(__file__).resolve().parents[1]
INSIDE_ENV = "HOOKLINE_CLIENT_FRESH_VENV"
"""Set while the client's tests run inside the fresh virtualenv, so this one does not recurse."""

SMOKE = """
import importlib.util, json, sys
import hookline_client
from hookline_client import AsyncNotifier, Notifier, PublishError
assert "site-packages" in hookline_client.__file__, hookline_client.__file__
missing = [m for m in ("asyncpg", "services", "shared", "pydantic", "structlog")
           if importlib.util.find_spec(m) is not None]
assert not missing, f"installed without being asked for: {missing}"
try:
    Notifier(sys.argv[1], namespace="nothing-here", timeout_s=2).notify("invoice.paid", {})
except PublishError as exc:
    print(json.dumps({"reason": exc.reason}))
"""

pytestmark = pytest.mark.skipif(
    os.environ.get(INSIDE_ENV) == "1", reason="already inside the fresh virtualenv"
)


def _run(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, (
        f"{command} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    )
    return result.stdout


def test_installs_alone_and_passes_its_tests(tmp_path: Path) -> None:
    from conftest import AMQP_URL

    env_dir = tmp_path / "venv"
    # Without pip of its own (fast): this interpreter's pip installs into it (`--python`).
    venv.create(env_dir, with_pip=False)
    python = str(env_dir / "bin" / "python")
    pip = [sys.executable, "-m", "pip", "--python", python, "install", "--quiet"]
    pip += ["--disable-pip-version-check"]
    _run([*pip, str(CLIENT_DIR)], tmp_path)
    out = _run([python, "-c", SMOKE, AMQP_URL], tmp_path)
    assert '"reason": "unroutable"' in out

    # The extra's requirements as pyproject.toml names them, without building the package
    # a second time.
    extra = tomllib.loads((CLIENT_DIR / "pyproject.toml").read_text())["project"]
    testing = ["pytest>=8", "pytest-asyncio>=0.24", "pytest-timeout"]
    _run([*pip, *extra["optional-dependencies"]["outbox"], *testing], tmp_path)
    env = {**os.environ, INSIDE_ENV: "1"}
    env.pop("PYTHONPATH", None)
    pytest_args = ["-c", str(CLIENT_DIR / "pyproject.toml"), "--rootdir", str(CLIENT_DIR)]
    out = _run(
        [
            str(env_dir / "bin" / "pytest"),
            "-q",
            "-p",
            "no:cacheprovider",
            *pytest_args,
            str(CLIENT_DIR / "tests"),
        ],
        tmp_path,
        env,
    )
    assert " passed" in out and "failed" not in out, out
