"""`python -m chaos`: parse options, run the chosen faults in turn, print the table, write JSON.

Exit status: 0 when every fault passed, 1 when one failed (a loss, too many duplicates, a
recovery over 30 s, or a fault that could not run), 130 when interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import shutil
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import orjson

from bench.receiver import Receiver
from chaos.backends import BackendError, PrivatePostgres, PrivateRabbit
from chaos.faults import FAULTS, Fault
from chaos.outcome import FaultOutcome
from chaos.report import render_fault, render_table, to_json
from chaos.run import Backends, Timing, run_fault


def _fault_list(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [n for n in names if n not in FAULTS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown fault {', '.join(unknown) or '(none)'}; choose from {', '.join(FAULTS)}"
        )
    return names


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m chaos",
        description="Hookline's fault suite: one fault at a time under a steady stream.",
    )
    parser.add_argument("--faults", type=_fault_list, default=tuple(FAULTS), help="comma-separated")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    parser.add_argument("--amqp-rate", type=float, default=Timing.amqp_rate, help="events/s")
    parser.add_argument("--http-rate", type=float, default=Timing.http_rate, help="events/s")
    parser.add_argument("--subscriptions", type=int, default=Timing.subscriptions)
    args = parser.parse_args(argv)
    if min(args.amqp_rate, args.http_rate) <= 0 or args.subscriptions < 1:
        parser.error("rates and --subscriptions must be greater than 0")
    return args


@contextlib.asynccontextmanager
async def _backends(cluster: bool, postgres: PrivatePostgres) -> AsyncIterator[Backends]:
    """A private single node (or three-node cluster) beside the run's private Postgres."""
    rabbit = PrivateRabbit(3 if cluster else 1)
    try:
        await asyncio.to_thread(rabbit.start)
        yield Backends(rabbit.amqp_url, postgres.admin_url, rabbit, postgres)
    finally:
        await asyncio.to_thread(rabbit.close)


async def _run_one(
    fault: Fault, backends: Backends, receiver: Receiver, timing: Timing, log_dir: Path
) -> FaultOutcome:
    print(f"running {fault.name}: {fault.summary} ...", file=sys.stderr, flush=True)
    try:
        outcome = await run_fault(fault, backends, receiver, timing, log_dir)
    except Exception as exc:  # a fault that cannot run fails the suite, the next one still runs
        outcome = FaultOutcome(fault.name, 0, 0, 0, 0, 0, None, None)
        outcome.failures = [f"the fault could not run: {exc}"]
    print(render_fault(outcome), file=sys.stderr, flush=True)
    return outcome


async def run(args: argparse.Namespace, log_dir: Path) -> list[FaultOutcome]:
    """Every chosen fault in order: the single-node ones first, then the cluster ones."""
    main_task = asyncio.current_task()
    assert main_task is not None
    # SIGTERM (as from `timeout`) cleans up like Ctrl-C: cancel, run every finally, exit.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    timing = Timing(
        amqp_rate=args.amqp_rate, http_rate=args.http_rate, subscriptions=args.subscriptions
    )
    chosen = [FAULTS[name] for name in args.faults]
    outcomes: list[FaultOutcome] = []
    receiver = Receiver()
    receiver.start()
    postgres = PrivatePostgres()
    try:
        await asyncio.to_thread(postgres.start)
        for cluster in (False, True):
            faults = [f for f in chosen if f.cluster == cluster]
            if not faults:
                continue
            async with _backends(cluster, postgres) as backends:
                for fault in faults:
                    outcomes.append(await _run_one(fault, backends, receiver, timing, log_dir))
    finally:
        await asyncio.to_thread(postgres.close)
        receiver.stop()
    return outcomes


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # The streams' own reconnections are expected during faults: not worth a traceback each.
    for name in ("aio_pika", "aiormq"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    log_dir = Path(tempfile.mkdtemp(prefix="hookline-chaos-logs-"))
    try:
        import uvloop

        uvloop.install()
        outcomes = asyncio.run(run(args, log_dir))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print(f"interrupted; everything was cleaned up; logs in {log_dir}", file=sys.stderr)
        return 130
    except BackendError as exc:
        print(f"a private backend failed: {exc}; logs in {log_dir}", file=sys.stderr)
        return 1
    print(render_table(outcomes))
    if args.out is not None:
        options = {k: v for k, v in vars(args).items() if k != "out"}
        options["faults"] = list(args.faults)
        document = to_json(outcomes, options)
        args.out.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2, default=str))
    if all(o.passed for o in outcomes):
        shutil.rmtree(log_dir, ignore_errors=True)
        return 0
    print(f"service logs kept in {log_dir}", file=sys.stderr)
    return 1
