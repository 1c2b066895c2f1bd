"""One fault under a steady stream: deploy, subscribe, stream, break, mend, drain, assess.

Each fault gets a deployment of its own (namespace, database, three service processes), so
nothing one fault left behind (a backlog, a retry in a queue) counts in the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bench.procs import Stack
from bench.publisher import EVENT_TYPE, WARMUP_SEQ
from bench.receiver import Receiver
from chaos.backends import PrivatePostgres, PrivateRabbit
from chaos.faults import Fault, FaultEnd, Scene
from chaos.outcome import FaultOutcome, assess
from chaos.stream import HTTP_SEQ_BASE, AmqpSender, HttpSender, Stream, StreamLog
from shared.signing import generate_secret
from shared.topology import Topology

API_TOKEN = "chaos-token-0123456789abcdef"
POLL_S = 0.5
WARMUP_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Timing:
    """How long each phase lasts and how much is sent; the functional tests use less."""

    before_s: float = 10.0
    """Streaming before the fault."""
    after_s: float = 20.0
    """Streaming after the fault ended."""
    stall_s: float = 45.0
    """The drain gives up when nothing new arrived for this long."""
    quiet_s: float = 6.0
    """Once every expected delivery is in, wait this long for late copies (duplicates)."""
    amqp_rate: float = 20.0
    http_rate: float = 5.0
    subscriptions: int = 2


@dataclass(frozen=True)
class Backends:
    """Where the deployments of a run live; a private backend is one faults may break."""

    amqp_url: str
    admin_database_url: str
    rabbit: PrivateRabbit | None = None
    postgres: PrivatePostgres | None = None


async def run_fault(
    fault: Fault, backends: Backends, receiver: Receiver, timing: Timing, log_dir: Path
) -> FaultOutcome:
    """Deploy Hookline for `fault`, run it under the streams, and assess every delivery."""
    namespace = f"chaos{uuid.uuid4().hex[:8]}_{fault.name.replace('-', '_')}"
    stack = Stack(
        namespace=namespace,
        amqp_url=backends.amqp_url,
        admin_database_url=backends.admin_database_url,
        api_token=API_TOKEN,
        log_dir=log_dir,
        extra_env={"HOOKLINE_LOG_LEVEL": "info", **fault.env},
    )
    notes: list[str] = []
    await stack.__aenter__()
    try:
        scene = Scene(stack, receiver, backends.rabbit, backends.postgres)
        outcome = await _under_streams(fault, scene, backends, timing, notes)
    finally:
        try:
            await stack.__aexit__(None, None, None)
        except Exception as exc:  # the fault may have left the broker unusable for clean-up
            notes.append(f"clean-up failed: {exc}")
    exits = {name: code for name, code in stack.exit_codes.items() if code}
    if exits:
        notes.append(f"exit codes on SIGTERM: {exits}")
    outcome.notes += notes
    return outcome


async def _under_streams(
    fault: Fault, scene: Scene, backends: Backends, timing: Timing, notes: list[str]
) -> FaultOutcome:
    stack, receiver, tag = scene.stack, scene.receiver, scene.stack.namespace
    secret = generate_secret()
    await receiver.trust(tag, secret)
    subs = range(timing.subscriptions)
    await _subscribe(stack, [receiver.url(tag, i) for i in subs], secret)
    exchange = Topology(tag, ()).ingest_exchange.name
    amqp = AmqpSender(backends.amqp_url, exchange, tag)
    http = HttpSender(stack.api_url, API_TOKEN, tag)
    await amqp.open()
    await http.open()
    try:
        await _warm_up(amqp, receiver, tag, len(subs))
        end, logs = await _stream_through(fault, scene, amqp, http, timing)
    finally:
        await amqp.close()
        await http.close()
    confirmed = {seq: at for log in logs for seq, at in log.confirmed.items()}
    await _drain(receiver, tag, len(confirmed) * len(subs), timing)
    notes += end.notes
    notes += [f"{log.source}: {log.sent} sent, failures {dict(log.failures)}" for log in logs]
    notes.append(await _readiness(stack))
    notes += await _stranded(backends, tag)
    counts = await receiver.counts()
    receipts = await receiver.collect(tag)
    bad = int(counts["bad_signatures"].get(tag, 0))
    outcome = assess(fault.name, receipts, confirmed, subs, end.at, bad, end.started_at)
    outcome.failures += end.failures
    return outcome


async def _stream_through(
    fault: Fault, scene: Scene, amqp: AmqpSender, http: HttpSender, timing: Timing
) -> tuple[FaultEnd, list[StreamLog]]:
    """Both streams running from `before_s` ahead of the fault to `after_s` past its end."""
    streams = [
        Stream("amqp", amqp.send, timing.amqp_rate),
        Stream("http", http.send, timing.http_rate, first_seq=HTTP_SEQ_BASE),
    ]
    for stream in streams:
        stream.start()
    try:
        await asyncio.sleep(timing.before_s)
        started_at = time.time()
        end = await fault.inject(scene)
        end.started_at = started_at
        await asyncio.sleep(timing.after_s)
    finally:
        logs = [await stream.stop() for stream in streams]
    return end, logs


async def _subscribe(stack: Stack, urls: list[str], secret: str) -> None:
    headers = {"authorization": f"Bearer {stack.api_token}"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        for url in urls:
            body = {"url": url, "event_types": [EVENT_TYPE], "secret": secret}
            async with session.post(
                f"{stack.api_url}/v1/subscriptions", json=body, headers=headers
            ) as resp:
                if resp.status != 201:
                    text = (await resp.text())[:500]
                    raise RuntimeError(f"creating a subscription answered {resp.status}: {text}")


async def _warm_up(amqp: AmqpSender, receiver: Receiver, tag: str, subs: int) -> None:
    """One event through the whole path before the clock starts."""
    await amqp.send(WARMUP_SEQ, time.time())
    deadline = time.monotonic() + WARMUP_TIMEOUT_S
    while await receiver.received(tag) < subs:
        if time.monotonic() > deadline:
            raise RuntimeError("the warm-up event was not delivered to every subscription")
        await asyncio.sleep(POLL_S)
    await receiver.collect(tag)


async def _drain(receiver: Receiver, tag: str, expected: int, timing: Timing) -> None:
    """Wait until `expected` receipts arrived and then `quiet_s` passed, or a stall."""
    count, last_change = 0, time.monotonic()
    while True:
        now_count = await receiver.received(tag)
        if now_count != count:
            count, last_change = now_count, time.monotonic()
        idle_s = time.monotonic() - last_change
        if (count >= expected and idle_s >= timing.quiet_s) or idle_s >= timing.stall_s:
            return
        await asyncio.sleep(POLL_S)


async def _readiness(stack: Stack) -> str:
    """What each service's `/readyz` answers at the end (the truth is in the deliveries)."""
    answers = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        for name, service in stack.services.items():
            code: object = "exited" if service.popen.poll() is not None else "no answer"
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(f"http://127.0.0.1:{service.metrics_port}/readyz") as r:
                    code = r.status
            answers.append(f"{name} {code}")
    return "readyz at the end: " + ", ".join(answers)


async def _stranded(backends: Backends, namespace: str) -> list[str]:
    """Queues of the namespace still holding messages, or consumed by no one, at the end."""
    if backends.rabbit is None:
        return []
    try:
        queues = await asyncio.to_thread(backends.rabbit.seed.queues, namespace)
    except RuntimeError as exc:
        return [f"could not list queues: {exc}"]
    return [
        f"queue {q['name']} ({q['type']}): {q['messages']} messages, {q['consumers']} consumers"
        for q in queues
        if q["messages"] not in ("0", "")
    ]
