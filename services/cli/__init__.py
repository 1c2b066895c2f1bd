"""The `hookline` command: migrate, run one service or all, the dead queue, secrets at rest,
and the HTTP API for people (`subscriptions`, `events`, `deliveries`, `event-types`)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from shared.durations import parse_duration_s

if TYPE_CHECKING:  # the services' imports cost a second: not for `hookline subscriptions`
    from shared.runtime import Component


def _components(name: str) -> list[tuple[str, Component]]:
    from services.fanout.app import run as run_fanout
    from services.ingest.app import run as run_ingest
    from services.sender.app import run as run_sender

    table: dict[str, Component] = {
        "ingest": run_ingest,
        "fanout": run_fanout,
        "sender": run_sender,
    }
    if name == "all":
        return list(table.items())
    return [(name, table[name])]


def _migrate(args: argparse.Namespace) -> int:
    from shared.db import migrate, migrate_when_reachable
    from shared.errors import StorageUnavailable
    from shared.logging import configure_logging
    from shared.settings import load_settings

    settings = load_settings()
    configure_logging(settings.log_format, settings.log_level)
    url = settings.database_url.get_secret_value()
    try:
        if args.wait:
            applied = asyncio.run(migrate_when_reachable(url, args.timeout, up_to=args.up_to))
        else:
            applied = asyncio.run(migrate(url, up_to=args.up_to))
    except StorageUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"migrations applied: {len(applied)}" + (f" ({', '.join(applied)})" if applied else ""))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hookline",
        description=__doc__,
        epilog="API commands exit 0 when done, 1 when the API refused the request (4xx),"
        " 2 on a usage error, 3 when the API is unreachable or failed (5xx).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    migrate = commands.add_parser(
        "migrate", help="create the database if missing, apply migrations"
    )
    migrate.add_argument(
        "--wait",
        action="store_true",
        help="retry while Postgres does not answer yet (an init container beside a starting "
        "database), up to --timeout",
    )
    migrate.add_argument(
        "--to",
        type=int,
        dest="up_to",
        metavar="VERSION",
        help="apply migrations up to this version only (a staged upgrade: docs/retention.md)",
    )
    migrate.add_argument(
        "--timeout", type=parse_duration_s, default=300.0, help="with --wait (default 5m)"
    )
    for name in ("ingest", "fanout", "sender"):
        commands.add_parser(name, help=f"run the {name} service in the foreground")
    commands.add_parser("all", help="run ingest, fanout and sender in one process")
    from services.cli.api import add_parsers as add_api_parsers
    from services.cli.dead import add_parser as add_dead_parser
    from services.cli.secrets import add_parser as add_secrets_parser

    add_dead_parser(commands)
    add_secrets_parser(commands)
    add_api_parsers(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "migrate":
        return _migrate(args)
    if getattr(args, "api_handler", None) is not None:
        from services.cli.api import run as run_api

        return run_api(args)
    if args.command == "dead":
        from services.cli.dead import main as dead_main

        return dead_main(args)
    if args.command == "secrets":
        from services.cli.secrets import main as secrets_main

        return secrets_main(args)
    from shared.runtime import run_service

    return run_service(args.command, _components(args.command))


if __name__ == "__main__":
    sys.exit(main())
