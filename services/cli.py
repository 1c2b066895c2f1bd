"""The `hookline` command: migrate, run one service or all, and inspect dead letters."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

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


def _migrate(up_to: int | None) -> int:
    from shared.db import migrate
    from shared.logging import configure_logging
    from shared.settings import load_settings

    settings = load_settings()
    configure_logging(settings.log_format, settings.log_level)
    applied = asyncio.run(migrate(settings.database_url.get_secret_value(), up_to=up_to))
    print(f"migrations applied: {len(applied)}" + (f" ({', '.join(applied)})" if applied else ""))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hookline", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    migrate = commands.add_parser(
        "migrate", help="create the database if missing, apply migrations"
    )
    migrate.add_argument(
        "--to",
        type=int,
        dest="up_to",
        metavar="VERSION",
        help="apply migrations up to this version only (a staged upgrade: docs/retention.md)",
    )
    for name in ("ingest", "fanout", "sender"):
        commands.add_parser(name, help=f"run the {name} service in the foreground")
    commands.add_parser("all", help="run ingest, fanout and sender in one process")
    dead = commands.add_parser("dead", help="inspect and redrive dead-lettered deliveries")
    dead_commands = dead.add_subparsers(dest="dead_command", required=True)
    listing = dead_commands.add_parser("list", help="list the deliveries in {ns}.dead")
    listing.add_argument("--limit", type=int, default=100)
    redrive = dead_commands.add_parser("redrive", help="send dead deliveries again")
    redrive.add_argument("--subscription", help="only this subscription's deliveries")
    from services.secrets_cli import add_parser as add_secrets_parser

    add_secrets_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "migrate":
        return _migrate(args.up_to)
    if args.command == "dead":
        from services.sender.dead import main as dead_main

        return dead_main(args)
    if args.command == "secrets":
        from services.secrets_cli import main as secrets_main

        return secrets_main(args)
    from shared.runtime import run_service

    return run_service(args.command, _components(args.command))


if __name__ == "__main__":
    sys.exit(main())
