"""`python -m bench`: parse options, run the chosen scenarios, print the table, write JSON."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import shutil
import signal
import sys
import tempfile
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import orjson

from bench.http import run_http
from bench.procs import with_database
from bench.receiver import Receiver
from bench.report import render_summary, render_table, summary_json, to_json
from bench.scenarios import SCENARIOS as AMQP_SCENARIOS
from bench.scenarios import Plan, ScenarioResult

SCENARIOS = {**{k: v for k, v in AMQP_SCENARIOS.items() if k != "ceiling"}, "http": run_http}
SCENARIOS["ceiling"] = AMQP_SCENARIOS["ceiling"]
"""Every scenario, in the order a run takes them (the ceiling last, as before)."""
DEFAULT_SCENARIOS = tuple(name for name in SCENARIOS if name != "many-subscriptions")
"""What runs without `--scenarios`: many-subscriptions takes minutes to load its database."""

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _scenario_list(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown scenario {', '.join(unknown) or '(none)'}; choose from {', '.join(SCENARIOS)}"
        )
    return names


def _positive(kind: type[int] | type[float]) -> Callable[[str], int | float]:
    def parse(text: str) -> int | float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError("must be greater than 0")
        return value

    return parse


def _env_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.startswith("HOOKLINE_"):
        raise argparse.ArgumentTypeError("expected HOOKLINE_NAME=VALUE")
    return name, value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Hookline's benchmark: fanout, steady, noisy neighbour, one subscription"
        " per event (fanout-1, steady-1), POST /v1/events under wrk (http), and the ceiling.",
    )
    parser.add_argument(
        "--events", type=_positive(int), default=5000, help="events (fanout, noisy)"
    )
    parser.add_argument(
        "--single-events", type=_positive(int), default=10_000, help="events of fanout-1"
    )
    parser.add_argument("--http-duration", type=_positive(float), default=20.0, help="seconds")
    parser.add_argument("--http-connections", type=_positive(int), default=32)
    parser.add_argument("--http-threads", type=_positive(int), default=2, help="wrk threads")
    parser.add_argument(
        "--ingest-processes",
        type=_positive(int),
        default=1,
        help="ingest processes of the http scenario, sharing its port (SO_REUSEPORT)",
    )
    parser.add_argument(
        "--env",
        type=_env_pair,
        action="append",
        default=[],
        metavar="HOOKLINE_NAME=VALUE",
        help="set for every service (repeatable), e.g. to compare a setting on and off",
    )
    parser.add_argument("--subscriptions", type=_positive(int), default=10)
    parser.add_argument("--rate", type=_positive(float), default=1000.0, help="steady deliveries/s")
    parser.add_argument("--duration", type=_positive(float), default=30.0, help="steady seconds")
    parser.add_argument(
        "--scenarios",
        type=_scenario_list,
        default=DEFAULT_SCENARIOS,
        help=f"comma-separated, of {', '.join(SCENARIOS)} (default {','.join(DEFAULT_SCENARIOS)})",
    )
    parser.add_argument(
        "--many-subscriptions",
        type=_positive(int),
        default=1_000_000,
        help="subscriptions of the many-subscriptions scenario",
    )
    parser.add_argument(
        "--past-deliveries",
        type=_positive(int),
        default=2_000_000,
        help="deliveries loaded for the many-subscriptions scenario's API reads",
    )
    parser.add_argument(
        "--repeat",
        type=_positive(int),
        default=1,
        help="run the scenarios this many times, in order, and report medians and ranges",
    )
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    parser.add_argument(
        "--amqp-url", default=os.environ.get("HOOKLINE_BENCH_AMQP_URL", DEFAULT_AMQP_URL)
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("HOOKLINE_BENCH_DATABASE_URL", DEFAULT_DATABASE_URL),
        help="any database on the server; each scenario creates and drops its own",
    )
    args = parser.parse_args(argv)
    if args.subscriptions < 2 and "noisy" in args.scenarios:
        parser.error("the noisy scenario needs at least 2 subscriptions")
    return args


async def run(
    args: argparse.Namespace, log_dir: Path
) -> tuple[list[dict[str, ScenarioResult]], bool]:
    """Run the scenarios in order, `--repeat` times; returns each pass's results and whether
    every scenario completed."""
    plan = Plan(
        events=args.events,
        subscriptions=args.subscriptions,
        rate=args.rate,
        duration_s=args.duration,
        amqp_url=args.amqp_url,
        admin_database_url=with_database(args.database_url, "postgres"),
        run_tag=f"bench{uuid.uuid4().hex[:8]}",
        log_dir=log_dir,
        many_subscriptions=args.many_subscriptions,
        past_deliveries=args.past_deliveries,
        single_events=args.single_events,
        http_duration_s=args.http_duration,
        http_connections=args.http_connections,
        http_threads=args.http_threads,
        ingest_processes=args.ingest_processes,
        extra_env=dict(args.env),
    )
    # SIGTERM (as from `timeout`) cleans up like Ctrl-C: cancel, run every finally, exit.
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    receiver = Receiver()
    receiver.start()
    passes: list[dict[str, ScenarioResult]] = []
    complete = True
    try:
        for number in range(1, args.repeat + 1):
            results: dict[str, ScenarioResult] = {}
            passes.append(results)
            for name in args.scenarios:
                label = f" (pass {number} of {args.repeat})" if args.repeat > 1 else ""
                print(f"running {name}{label} ...", file=sys.stderr, flush=True)
                try:
                    results[name] = await SCENARIOS[name](
                        dataclasses.replace(plan, run_tag=f"{plan.run_tag}p{number}"), receiver
                    )
                except (RuntimeError, OSError, TimeoutError) as exc:
                    complete = False
                    print(f"scenario {name} failed: {exc}", file=sys.stderr, flush=True)
    finally:
        receiver.stop()
    return passes, complete


def main(argv: Sequence[str] | None = None) -> int:
    """Exit 0 when every scenario ran (targets met or not), 1 when one failed, 130 on Ctrl-C."""
    args = parse_args(argv)
    log_dir = Path(tempfile.mkdtemp(prefix="hookline-bench-"))
    try:
        import uvloop

        uvloop.install()
        passes, complete = asyncio.run(run(args, log_dir))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print(f"interrupted; everything was cleaned up; service logs in {log_dir}", file=sys.stderr)
        return 130
    options = {k: v for k, v in vars(args).items() if k not in ("out",)}
    options["scenarios"] = list(args.scenarios)
    if len(passes) == 1:
        print(render_table(passes[0]))
        document = to_json(passes[0], options)
    else:
        for number, results in enumerate(passes, 1):
            print(f"pass {number}:\n{render_table(results)}\n")
        print(render_summary(passes))
        document = summary_json(passes, options)
    if args.out is not None:
        args.out.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2, default=str))
    if complete:
        shutil.rmtree(log_dir, ignore_errors=True)
        return 0
    print(f"service logs kept in {log_dir}", file=sys.stderr)
    return 1
