"""The `hookline-outbox` command: `migrate` the producer's database, run the `relay`.

Every option has an environment variable, so that a password never has to be on a command
line: `HOOKLINE_OUTBOX_DATABASE_URL`, `HOOKLINE_AMQP_URL`, `HOOKLINE_NAMESPACE`,
`HOOKLINE_OUTBOX_METRICS_PORT`. Exit codes: 0 done (or stopped by SIGTERM), 1 failed,
2 usage.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import signal
import sys
from collections.abc import Sequence

import asyncpg

from hookline_client.outbox.metrics import RelayMetrics
from hookline_client.outbox.relay import Relay, RelayConfig
from hookline_client.outbox.schema import migrate

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")

log = logging.getLogger("hookline_client.outbox")


def duration_s(text: str) -> float:
    """`500ms`, `10s`, `5m`, `24h`, `7d` in seconds."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 10s, 5m, 24h, 7d")
    return float(match[1]) * _UNITS[match[2]]


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(name) or default


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hookline-outbox", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("migrate", "create or upgrade the outbox table and function (idempotent)"),
        ("relay", "publish committed outbox rows to Hookline until SIGTERM"),
    ):
        sub = commands.add_parser(name, help=text)
        sub.add_argument(
            "--database-url",
            default=_env("HOOKLINE_OUTBOX_DATABASE_URL"),
            help="the producer's database (env HOOKLINE_OUTBOX_DATABASE_URL)",
        )
    relay = commands.choices["relay"]
    relay.add_argument(
        "--amqp-url",
        default=_env("HOOKLINE_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
        help="Hookline's broker (env HOOKLINE_AMQP_URL)",
    )
    relay.add_argument(
        "--namespace",
        default=_env("HOOKLINE_NAMESPACE", "hookline"),
        help="Hookline's namespace: events go to {namespace}.ingest (env HOOKLINE_NAMESPACE)",
    )
    relay.add_argument("--batch-size", type=positive_int, default=500, help="rows per transaction")
    relay.add_argument(
        "--poll-interval", type=duration_s, default=10.0, help="safety poll besides LISTEN"
    )
    relay.add_argument(
        "--retention", type=duration_s, default=86400.0, help="keep published rows this long"
    )
    relay.add_argument("--publish-timeout", type=duration_s, default=10.0)
    relay.add_argument(
        "--metrics-port",
        type=int,
        default=int(_env("HOOKLINE_OUTBOX_METRICS_PORT", "0") or 0),
        help="serve /metrics here (0: not served; env HOOKLINE_OUTBOX_METRICS_PORT)",
    )
    relay.add_argument("--metrics-host", default="0.0.0.0")
    return parser


async def _migrate(database_url: str) -> list[str]:
    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        return await migrate(conn)
    finally:
        await conn.close()


async def _relay(config: RelayConfig, metrics: RelayMetrics) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    log.info("outbox_relay_started namespace=%s", config.namespace)
    await Relay(config, metrics).run(stop)
    log.info("outbox_relay_stopped")


def main(argv: Sequence[str] | None = None) -> int:
    """The `hookline-outbox` entry point; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.database_url:
        parser.error("--database-url (or HOOKLINE_OUTBOX_DATABASE_URL) is required")
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s"
    )
    if args.command == "migrate":
        try:
            applied = asyncio.run(_migrate(args.database_url))
        except (OSError, asyncpg.PostgresError) as exc:
            print(f"hookline-outbox migrate failed: {exc}", file=sys.stderr)
            return 1
        print(
            f"outbox migrations applied: {len(applied)}"
            + (f" ({', '.join(applied)})" if applied else "")
        )
        return 0
    config = RelayConfig(
        database_url=args.database_url,
        amqp_url=args.amqp_url,
        namespace=args.namespace,
        batch_size=args.batch_size,
        poll_interval_s=args.poll_interval,
        retention_s=args.retention,
        publish_timeout_s=args.publish_timeout,
    )
    metrics = RelayMetrics()
    if args.metrics_port:
        metrics.serve(args.metrics_port, args.metrics_host)
    asyncio.run(_relay(config, metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
