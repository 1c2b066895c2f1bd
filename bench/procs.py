"""Hookline's real services as separate processes, on a namespace and database of their own.

`Stack` is one deployment for one scenario: it creates the database with `hookline migrate`,
starts `python -m services.ingest|fanout|sender`, waits until each `/readyz` answers 200, and
on exit stops them (SIGTERM, then SIGKILL after a grace), deletes the namespace's exchanges
and queues and drops the database, also after a failure or Ctrl-C.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import aiohttp

from shared.db import drop_database
from shared.topology import Topology

SERVICES = ("ingest", "fanout", "sender")
REPO_ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 60.0
STOP_GRACE_S = 20.0
BENCH_RETRY_DELAYS = "5s,5m,30m,2h,5h,10h,14h,20h,24h"
"""The contract's default schedule, spelled out so the bench knows its retry queues."""


_PR_SET_PDEATHSIG = 1
_libc_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None


def die_with_parent() -> None:
    """A `preexec_fn`: the child gets SIGTERM when the bench dies, even by SIGKILL.

    Services run in their own session (so Ctrl-C reaches only the bench, which stops them in
    order); this is what still stops them when the bench cannot. It must run in a child
    forked by the main thread: the signal follows the thread that forked.
    """
    if _libc_prctl is not None:
        _libc_prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU seconds a live process has used; None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name may hold spaces; the fields after it are fixed (utime, stime: 14, 15).
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pids_named(comm: str) -> list[int]:
    """Every live process whose command name is `comm` (as `beam.smp` or `postgres`)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == comm:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


class CpuMeter:
    """CPU seconds some processes use over a window.

    `pids` are single processes; `groups` are command names whose processes are summed (the
    broker, the database server), looked up again at every sample. A process that exits
    before `stop` counts with its last `sample()`.
    """

    def __init__(self, pids: dict[str, int | None], groups: dict[str, str] | None = None) -> None:
        self._pids = {name: pid for name, pid in pids.items() if pid is not None}
        self._groups = groups or {}
        self._first: dict[tuple[str, int], float] = {}
        self._last: dict[tuple[str, int], float] = {}
        self._started_at = 0.0

    def start(self) -> None:
        self._started_at = time.monotonic()
        self._first, self._last = {}, {}
        self.sample()

    def sample(self) -> None:
        members = [(name, pid) for name, pid in self._pids.items()]
        for name, comm in self._groups.items():
            members += [(name, pid) for pid in pids_named(comm)]
        for key in members:
            used = cpu_seconds(key[1])
            if used is not None:
                self._first.setdefault(key, used)
                self._last[key] = used

    async def background(self, seconds: float) -> dict[str, float]:
        """CPU seconds per second each group (the shared servers) uses over `seconds` now,
        while the scenario sends nothing: other users' load, to subtract from the figures."""
        meter = CpuMeter({}, self._groups)
        meter.start()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await asyncio.sleep(0.25)
            meter.sample()  # a process that exits meanwhile counts until its last sample
        used, window_s = meter.stop()
        return {name: (value or 0.0) / window_s for name, value in used.items()}

    def stop(self) -> tuple[dict[str, float | None], float]:
        """CPU seconds each process (or group) used since `start`, and the window's length."""
        self.sample()
        window_s = time.monotonic() - self._started_at
        used: dict[str, float | None] = dict.fromkeys([*self._pids, *self._groups])
        for key, last in self._last.items():
            name = key[0]
            used[name] = (used[name] or 0.0) + last - self._first[key]
        return used, window_s


def parse_counters(metrics_text: str) -> dict[str, float]:
    """Every `hookline_*_total` sample of a Prometheus text page, by name and labels."""
    counters: dict[str, float] = {}
    for line in metrics_text.splitlines():
        if line.startswith("hookline_") and "_total" in line.split(" ", 1)[0].split("{", 1)[0]:
            name, _, value = line.rpartition(" ")
            counters[name] = float(value)
    return counters


_HANDED_OUT: set[int] = set()
"""Ports this process gave out: never given twice, since the first taker may not have bound
it yet, or may still hold it (a service of an earlier test that is still stopping)."""


def free_port() -> int:
    """A port free on 127.0.0.1 now, taken below the kernel's ephemeral range: a port the
    kernel handed out (bind to 0) is soon handed out again for some outgoing connection,
    which then holds it when the service starts ("address already in use")."""
    low, _ = ephemeral_port_range()
    for _ in range(200):
        port = random.randrange(max(1024, low - 12000), low)
        if port in _HANDED_OUT:
            continue
        _HANDED_OUT.add(port)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port found below the ephemeral range")


def ephemeral_port_range() -> tuple[int, int]:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(v) for v in f.read().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return low, high


def parse_peak_rss(status_text: str) -> int | None:
    """Bytes of `VmHWM` (peak resident set) in a /proc/<pid>/status text, None without it."""
    for line in status_text.splitlines():
        if line.startswith("VmHWM:"):
            value, unit = line.split()[1:3]
            if unit.lower() != "kb":
                raise ValueError(f"unexpected VmHWM unit {unit!r}")
            return int(value) * 1024
    return None


def peak_rss(pid: int) -> int | None:
    """The peak RSS of a live process in bytes; None when it is gone."""
    try:
        return parse_peak_rss(Path(f"/proc/{pid}/status").read_text())
    except (FileNotFoundError, ProcessLookupError):
        return None


def with_database(url: str, name: str) -> str:
    """`url` pointing at database `name`."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def service_env(values: dict[str, str]) -> dict[str, str]:
    """This process's environment without any `HOOKLINE_*` variable, plus `values`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKLINE_")}
    env.update(values)
    return env


@dataclass
class ServiceProcess:
    name: str
    popen: subprocess.Popen[bytes]
    metrics_port: int
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def check_alive(self) -> None:
        code = self.popen.poll()
        if code is not None:
            raise RuntimeError(
                f"{self.name} exited with {code}; its log ({self.log_path}):\n{self.log_tail()}"
            )

    async def wait_ready(self, session: aiohttp.ClientSession, deadline: float) -> None:
        url = f"http://127.0.0.1:{self.metrics_port}/readyz"
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass  # not up yet, or too busy loading to answer (an old whole-table load)
            await asyncio.sleep(0.05)
        raise RuntimeError(f"{self.name} was not ready within {READY_TIMEOUT_S:.0f}s")

    async def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after STOP_GRACE_S; returns the exit code."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.popen.wait, STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                await asyncio.to_thread(self.popen.wait, STOP_GRACE_S)
        return self.popen.returncode


class Stack:
    """One deployment of Hookline for one scenario (use as `async with`)."""

    def __init__(
        self,
        *,
        namespace: str,
        amqp_url: str,
        admin_database_url: str,
        api_token: str,
        log_dir: Path,
        extra_env: dict[str, str] | None = None,
        prepare: Callable[[str], Awaitable[None]] | None = None,
        ingest_processes: int = 1,
    ) -> None:
        """`prepare(database_url)` runs after the migration, before any service starts;
        `ingest_processes` > 1 starts that many ingest processes sharing the API port
        (`HOOKLINE_API_REUSE_PORT`), named ingest, ingest-2, ..."""
        self.namespace = namespace
        self._prepare = prepare
        self.ingest_processes = ingest_processes
        self.ready_s: dict[str, float] = {}
        """Seconds from each service's start to its first `/readyz` 200."""
        self.amqp_url = amqp_url
        self.database_url = with_database(admin_database_url, f"hookline_{namespace}")
        self.api_token = api_token
        self.api_port = free_port()
        self.log_dir = log_dir
        self.services: dict[str, ServiceProcess] = {}
        self.peak_rss: dict[str, int | None] = {}
        self.cpu_s: dict[str, float | None] = {}
        self.counters: dict[str, dict[str, float]] = {}
        self.exit_codes: dict[str, int | None] = {}
        self._env = {
            "HOOKLINE_AMQP_URL": amqp_url,
            "HOOKLINE_DATABASE_URL": self.database_url,
            "HOOKLINE_NAMESPACE": namespace,
            "HOOKLINE_API_HOST": "127.0.0.1",
            "HOOKLINE_API_PORT": str(self.api_port),
            "HOOKLINE_METRICS_HOST": "127.0.0.1",
            "HOOKLINE_API_TOKENS": api_token,
            "HOOKLINE_ALLOW_PRIVATE_TARGETS": "true",
            "HOOKLINE_LOG_LEVEL": "warning",
            "HOOKLINE_LOG_FORMAT": "json",
            "HOOKLINE_RETRY_DELAYS": BENCH_RETRY_DELAYS,
            # Every service of a bench deployment runs this version, so the many-per-message
            # format is on (`--env HOOKLINE_BATCH_MESSAGES=false` measures it off).
            "HOOKLINE_BATCH_MESSAGES": "true",
            **(extra_env or {}),
        }
        if ingest_processes > 1:
            self._env["HOOKLINE_API_REUSE_PORT"] = "true"
        self._exit = AsyncExitStack()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    async def __aenter__(self) -> Stack:
        try:
            self._exit.push_async_callback(drop_database, self.database_url)
            await self._migrate()
            if self._prepare is not None:
                await self._prepare(self.database_url)
            self._exit.push_async_callback(self._delete_namespace)
            started = time.monotonic()
            for name in SERVICES:
                self._start(name)
            for number in range(2, self.ingest_processes + 1):
                self._start(f"ingest-{number}")
            self._exit.push_async_callback(self._stop_services)
            deadline = started + READY_TIMEOUT_S
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
                await asyncio.gather(
                    *(
                        self._time_ready(s, session, started, deadline)
                        for s in self.services.values()
                    )
                )
        except BaseException:
            await self._exit.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._exit.aclose()

    async def _time_ready(
        self,
        service: ServiceProcess,
        session: aiohttp.ClientSession,
        started: float,
        deadline: float,
    ) -> None:
        await service.wait_ready(session, deadline)
        self.ready_s[service.name] = time.monotonic() - started

    def check_alive(self) -> None:
        """Raise when a service process has died: its figures would mean nothing."""
        for service in self.services.values():
            service.check_alive()

    def kill(self, name: str) -> None:
        """kill -9 the service `name` (a crash: no drain, no goodbye to the broker)."""
        service = self.services[name]
        service.popen.kill()
        service.popen.wait()

    async def restart(self, name: str, *, wait_ready: bool = True) -> None:
        """Start `name` again after `kill`, on a new metrics port, its log appended to."""
        if self.services[name].popen.poll() is None:
            raise RuntimeError(f"{name} is still running")
        self._start(name)
        if wait_ready:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
                await self.services[name].wait_ready(session, time.monotonic() + READY_TIMEOUT_S)

    async def _migrate(self) -> None:
        command = [sys.executable, "-m", "services.cli", "migrate"]
        env = service_env(self._env)
        proc = await asyncio.to_thread(
            subprocess.run, command, env=env, cwd=REPO_ROOT, capture_output=True, timeout=120
        )
        if proc.returncode != 0:
            raise RuntimeError(f"hookline migrate failed:\n{proc.stderr.decode()[-2000:]}")

    def _start(self, name: str) -> None:
        metrics_port = free_port()
        env = service_env({**self._env, "HOOKLINE_METRICS_PORT": str(metrics_port)})
        log_path = self.log_dir / f"{self.namespace}-{name}.log"
        with log_path.open("ab") as log:
            popen = subprocess.Popen(
                [sys.executable, "-m", f"services.{name.split('-', 1)[0]}"],
                env=env,
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own session: Ctrl-C reaches the bench only, which then stops it in order.
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        self.services[name] = ServiceProcess(name, popen, metrics_port, log_path)

    async def _scrape_counters(self) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            for name, service in self.services.items():
                try:
                    url = f"http://127.0.0.1:{service.metrics_port}/metrics"
                    async with session.get(url) as resp:
                        self.counters[name] = parse_counters(await resp.text())
                except (aiohttp.ClientError, TimeoutError):
                    self.counters[name] = {}

    async def _stop_services(self) -> None:
        await self._scrape_counters()
        for name, service in self.services.items():
            self.peak_rss[name] = peak_rss(service.pid)
            self.cpu_s[name] = cpu_seconds(service.pid)
        # Stopped in reverse flow order would leave ingest publishing into a stopped fanout;
        # all three drain on SIGTERM, so they are stopped together.
        codes = await asyncio.gather(*(s.stop() for s in self.services.values()))
        self.exit_codes = dict(zip(self.services, codes, strict=True))

    async def _delete_namespace(self) -> None:
        delays = self._env["HOOKLINE_RETRY_DELAYS"]
        await delete_namespace(self.amqp_url, self.namespace, extra_queues=(), retry_delays=delays)


async def delete_namespace(
    amqp_url: str,
    namespace: str,
    extra_queues: tuple[str, ...],
    retry_delays: str = BENCH_RETRY_DELAYS,
) -> None:
    """Delete every exchange and queue Hookline declares in `namespace`, and `extra_queues`."""
    from shared.durations import parse_duration_s

    delays = tuple(parse_duration_s(d) for d in retry_delays.split(","))
    exchanges, queues = Topology(namespace, delays).everything()
    connection = await aio_pika.connect(amqp_url, timeout=10)
    try:
        channel = await connection.channel()
        for name in [*(q.name for q in queues), *extra_queues]:
            await channel.queue_delete(name)
        for exchange in exchanges:
            await channel.exchange_delete(exchange.name)
    finally:
        await connection.close()
