"""`hookline dead list` and `hookline dead redrive [--subscription ID]` (see
`services.sender.dead` for what they do to the dead queue)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TextIO

from services.sender.dead import DeadEntry, list_dead, redrive
from shared.logging import configure_logging
from shared.settings import load_settings


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `dead list` and `dead redrive` under the `hookline` command."""
    dead = commands.add_parser("dead", help="inspect and redrive dead-lettered deliveries")
    dead_commands = dead.add_subparsers(dest="dead_command", required=True)
    listing = dead_commands.add_parser("list", help="list the deliveries in {ns}.dead")
    listing.add_argument("--limit", type=int, default=100)
    again = dead_commands.add_parser("redrive", help="send dead deliveries again")
    again.add_argument("--subscription", help="only this subscription's deliveries")


def _print_list(entries: list[DeadEntry], out: TextIO) -> None:
    for entry in entries:
        print(entry.line(), file=out)
    print(f"{len(entries)} dead deliveries listed (still in the dead queue)", file=out)


def main(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """The `hookline dead` command; returns the exit code."""
    settings = load_settings()
    configure_logging(settings.log_format, settings.log_level)
    if args.dead_command == "list":
        _print_list(asyncio.run(list_dead(settings, getattr(args, "limit", 100))), out)
        return 0
    if args.dead_command == "redrive":
        report = asyncio.run(redrive(settings, getattr(args, "subscription", None)))
        print(f"{len(report.redriven)} redriven, {report.kept} left in the dead queue", file=out)
        return 0
    print(f"unknown dead command {args.dead_command!r}", file=sys.stderr)
    return 2
