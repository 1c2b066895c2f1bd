"""`POST /v1/events` under load from wrk, a load generator in its own process.

wrk (Debian's `wrk` package, installed by `make bench` / `make install`) keeps its
connections alive and runs a Lua script that gives every request a unique event: idempotency
key `<tag>-<seq>`, `data.seq` the same number. The script's `done` hook prints wrk's own
request latency percentiles and counts as one JSON line, which `run_wrk` returns parsed.
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import orjson

from bench.procs import die_with_parent

SEQ_PER_THREAD = 100_000_000
"""Sequence numbers of wrk thread n start at n x this, so threads never share a key."""

_LUA = """\
-- Written by bench/loadgen.py: one unique bench event per request.
local tag = "@TAG@"
local event_type = "@TYPE@"
local counter = 0
local threads = {}

function setup(thread)
  thread:set("thread_no", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer @TOKEN@"
end

function request()
  counter = counter + 1
  local seq = thread_no * @PER_THREAD@ + counter
  local body = string.format(
    '{"type":"%s","id":"%s-%d","data":{"seq":%d,"sent_at":0}}', event_type, tag, seq, seq)
  return wrk.format(nil, "/v1/events", nil, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"status_errors":%d,"socket_errors":%d,' ..
    '"timeouts":%d,"p50_us":%d,"p99_us":%d,"max_us":%d}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write,
    e.timeout, latency:percentile(50), latency:percentile(99), latency.max))
end
"""


@dataclass(frozen=True)
class WrkResult:
    """What wrk saw: requests answered (any status) and its latency percentiles."""

    requests: int
    duration_s: float
    status_errors: int
    """Answers with a status of 400 or more."""
    socket_errors: int
    timeouts: int
    p50_ms: float
    p99_ms: float
    max_ms: float

    @property
    def accepted(self) -> int:
        """Requests answered below 400 (202, or 200 for a repeated key)."""
        return max(0, self.requests - self.status_errors)

    @property
    def accepted_per_s(self) -> float | None:
        return self.accepted / self.duration_s if self.duration_s > 0 else None


def lua_script(tag: str, token: str, event_type: str) -> str:
    """The wrk script publishing unique `event_type` events with keys `<tag>-<seq>`."""
    for value in (tag, token, event_type):
        if not value.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise ValueError(f"{value!r} cannot be written into the Lua script as it is")
    return (
        _LUA.replace("@TAG@", tag)
        .replace("@TOKEN@", token)
        .replace("@TYPE@", event_type)
        .replace("@PER_THREAD@", str(SEQ_PER_THREAD))
    )


def parse_done_line(stdout: str) -> WrkResult:
    """The JSON line the script's `done` hook printed (the last one starting with `{`)."""
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"wrk printed no summary:\n{stdout[-2000:]}")
    raw = orjson.loads(lines[-1])
    return WrkResult(
        requests=int(raw["requests"]),
        duration_s=raw["duration_us"] / 1e6,
        status_errors=int(raw["status_errors"]),
        socket_errors=int(raw["socket_errors"]),
        timeouts=int(raw["timeouts"]),
        p50_ms=raw["p50_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
    )


def wrk_path() -> str:
    """The wrk binary, or a RuntimeError saying how to install it."""
    found = shutil.which("wrk")
    if found is None:
        raise RuntimeError(
            "wrk is not installed: `make bench` installs it with apt-get when run as root;"
            " otherwise `sudo apt-get install wrk` (Debian/Ubuntu)"
        )
    return found


async def start_wrk(
    url: str,
    script: Path,
    *,
    duration_s: float,
    connections: int,
    threads: int,
    log: IO[bytes],
) -> asyncio.subprocess.Process:
    """Start wrk against `url` (the API's base URL); read its stdout for `parse_done_line`."""
    return await asyncio.create_subprocess_exec(
        wrk_path(),
        *("-t", str(threads), "-c", str(connections), "-d", f"{duration_s:g}s"),
        *("--timeout", "10s", "-s", str(script), url),
        stdout=asyncio.subprocess.PIPE,
        stderr=log,
        start_new_session=True,
        preexec_fn=die_with_parent,
    )
