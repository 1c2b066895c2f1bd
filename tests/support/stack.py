"""End-to-end harness: the real services as separate processes, on a fresh database and namespace.

A `Stack` owns one deployment: its own `HOOKLINE_NAMESPACE`, its own database (created by
`hookline migrate`), free ports, JSON logs captured to one file per process. `start(name)`
starts `python -m services.<name>` (or `hookline all`) and waits for its `/readyz`;
`close()` sends SIGTERM to every process still running, then drops the database and the
namespace's broker objects, and reports any process that did not exit 0.

The blocking calls are plain functions: from an async test, run them with `asyncio.to_thread`
so that the test's receiver keeps answering meanwhile.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Coroutine, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import orjson

from shared.settings import Settings
from shared.topology import Topology
from tests.support import (
    AMQP_URL,
    API_TOKEN,
    database_url,
    delete_namespace,
    drop_database,
    free_port,
    unique_name,
)

SERVICES = ("ingest", "fanout", "sender")
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
RETRY_DELAYS = "200ms,400ms"


def run_coroutine(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine to completion on its own loop in another thread.

    Safe from sync fixtures and from inside a running loop alike: the caller's loop (if any)
    is never replaced or closed.
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


@dataclass
class Proc:
    """One running service process."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    metrics_port: int


@dataclass
class Stack:
    """One isolated Hookline deployment made of real processes."""

    workdir: Path
    env_overrides: Mapping[str, str] = field(default_factory=dict)
    namespace: str = field(default_factory=lambda: unique_name("e2e"))
    db_name: str = field(default_factory=lambda: unique_name("hookline_e2e_"))
    api_port: int = field(default_factory=free_port)
    procs: dict[str, Proc] = field(default_factory=dict)
    exits: list[tuple[str, int]] = field(default_factory=list)
    """(process name, exit code) of every process stopped so far."""
    _launches: int = 0

    # Configuration -------------------------------------------------------------------------
    @property
    def env(self) -> dict[str, str]:
        """The environment every process of this stack runs with."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("HOOKLINE_")}
        base.update(
            {
                "PYTHONUNBUFFERED": "1",
                "HOOKLINE_AMQP_URL": AMQP_URL,
                "HOOKLINE_DATABASE_URL": database_url(self.db_name),
                "HOOKLINE_NAMESPACE": self.namespace,
                "HOOKLINE_API_HOST": "127.0.0.1",
                "HOOKLINE_API_PORT": str(self.api_port),
                "HOOKLINE_API_TOKENS": API_TOKEN,
                "HOOKLINE_ALLOW_PRIVATE_TARGETS": "true",
                "HOOKLINE_RETRY_DELAYS": RETRY_DELAYS,
                "HOOKLINE_DELIVERY_TIMEOUT": "2s",
                "HOOKLINE_SHUTDOWN_GRACE": "5s",
                "HOOKLINE_LOG_FORMAT": "json",
            }
        )
        base.update(self.env_overrides)
        return base

    @property
    def settings(self) -> Settings:
        """The settings the processes read from `env` (for topology names and the like)."""
        values: dict[str, Any] = {
            k.removeprefix("HOOKLINE_").lower(): v for k, v in self.env.items()
        }
        return Settings(**{k: v for k, v in values.items() if k in Settings.model_fields})

    @property
    def topology(self) -> Topology:
        return Topology(self.namespace, self.settings.retry_delays)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    # Processes -----------------------------------------------------------------------------
    def migrate(self) -> str:
        """Run `hookline migrate`, which creates this stack's database; returns its output."""
        result = subprocess.run(
            [*hookline_command(), "migrate"],
            env=self.env,
            cwd=self.workdir,
            capture_output=True,
            timeout=120,
            check=False,
        )
        output = (result.stdout + result.stderr).decode(errors="replace")
        if result.returncode != 0:
            raise AssertionError(f"hookline migrate exited {result.returncode}:\n{output}")
        return output

    def start(self, name: str) -> Proc:
        """Start `name` (a service, or `all`) and wait until its `/readyz` answers 200."""
        if name in self.procs:
            raise AssertionError(f"{name} is already running")
        self._launches += 1
        metrics_port = free_port()
        log_path = self.workdir / f"{self._launches:02d}-{name}.log"
        env = {**self.env, "HOOKLINE_METRICS_PORT": str(metrics_port)}
        command = [*hookline_command(), "all"] if name == "all" else service_command(name)
        with log_path.open("wb") as log_file:
            popen = subprocess.Popen(
                command,
                env=env,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        proc = Proc(name, popen, log_path, metrics_port)
        self.procs[name] = proc
        self._wait_ready(proc)
        return proc

    def start_all(self, names: Iterable[str] = SERVICES) -> None:
        for name in names:
            self.start(name)

    def _wait_ready(self, proc: Proc) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        url = f"http://127.0.0.1:{proc.metrics_port}/readyz"
        while time.monotonic() < deadline:
            code = proc.popen.poll()
            if code is not None:
                raise AssertionError(
                    f"{proc.name} exited {code} before it was ready:\n{tail(proc.log_path)}"
                )
            try:
                with urllib.request.urlopen(url, timeout=1) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise AssertionError(
            f"{proc.name} not ready after {READY_TIMEOUT_S}s:\n{tail(proc.log_path)}"
        )

    def stop(self, name: str) -> int:
        """SIGTERM `name`, wait for it to exit, and return its exit code (-9 if it hung)."""
        proc = self.procs.pop(name)
        proc.popen.send_signal(signal.SIGTERM)
        try:
            code = proc.popen.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.popen.kill()
            proc.popen.wait()
            code = -9
        self.exits.append((name, code))
        return code

    def kill(self, name: str) -> None:
        """SIGKILL `name`: a crash, not a shutdown, so its exit code is not checked."""
        proc = self.procs.pop(name)
        proc.popen.kill()
        proc.popen.wait()

    def close(self) -> list[str]:
        """Stop everything, drop the database and broker objects; return what went wrong."""
        for name in list(self.procs):
            self.stop(name)
        problems = [
            f"{name} exited {code} after SIGTERM (expected 0)" for name, code in self.exits if code
        ]
        run_coroutine(drop_database(self.db_name))
        run_coroutine(delete_namespace(self.namespace, self.settings.retry_delays))
        return problems

    # Logs ----------------------------------------------------------------------------------
    def log_paths(self) -> list[Path]:
        return sorted(self.workdir.glob("*.log"))

    def log_text(self) -> str:
        """Everything every process of this stack wrote so far."""
        return "".join(p.read_text(errors="replace") for p in self.log_paths())

    def log_lines(self) -> list[dict[str, Any]]:
        """Every log line parsed as JSON; a line that is not JSON comes as `{"raw": line}`."""
        lines: list[dict[str, Any]] = []
        for line in self.log_text().splitlines():
            if not line.strip():
                continue
            try:
                parsed = orjson.loads(line)
            except orjson.JSONDecodeError:
                parsed = None
            lines.append(parsed if isinstance(parsed, dict) else {"raw": line})
        return lines

    # Clients -------------------------------------------------------------------------------
    @asynccontextmanager
    async def api(self, token: str = API_TOKEN) -> AsyncIterator[aiohttp.ClientSession]:
        """An HTTP client of this stack's API, with the bearer token set."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with aiohttp.ClientSession(base_url=self.api_url, headers=headers) as session:
            yield session

    @asynccontextmanager
    async def publisher(self) -> AsyncIterator[Publisher]:
        """A publisher to `{ns}.ingest` as the contract describes: persistent, confirmed."""
        connection = await aio_pika.connect(AMQP_URL)
        try:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(self.topology.ingest_exchange.name)
            yield Publisher(exchange)
        finally:
            await connection.close()

    async def read_queue(self, queue_name: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
        """Take every message now in `queue_name` (acknowledged, so they leave it)."""
        connection = await aio_pika.connect(AMQP_URL)
        taken = []
        try:
            channel = await connection.channel()
            queue = await channel.get_queue(queue_name)
            while (message := await queue.get(no_ack=True, fail=False)) is not None:
                taken.append(message)
        finally:
            await connection.close()
        return taken


class Publisher:
    """Publishes events with publisher confirms; each call returns after the broker confirmed."""

    def __init__(self, exchange: aio_pika.abc.AbstractExchange) -> None:
        self._exchange = exchange

    async def publish(self, event: Mapping[str, Any] | bytes, routing_key: str = "") -> None:
        """Publish a JSON event (routing key = its type) or raw bytes (for invalid messages)."""
        if isinstance(event, bytes):
            body = event
        else:
            body = orjson.dumps(event)
            routing_key = routing_key or str(event.get("type", ""))
        message = aio_pika.Message(
            body,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        await self._exchange.publish(message, routing_key=routing_key or "unknown", mandatory=True)


def hookline_command() -> list[str]:
    """The `hookline` console script of this environment (the module when not installed)."""
    script = Path(sys.executable).with_name("hookline")
    return [str(script)] if script.exists() else [sys.executable, "-m", "services.cli"]


def service_command(name: str) -> list[str]:
    return [sys.executable, "-m", f"services.{name}"]


def tail(path: Path, lines: int = 40) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])
