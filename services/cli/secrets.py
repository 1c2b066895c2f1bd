"""`hookline secrets new-key` and `hookline secrets reencrypt`: keys for secrets at rest.

Rotating `HOOKLINE_SECRET_KEY` (see docs/security.md): run every service with
`NEW,OLD`, run `reencrypt`, then drop `OLD`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import asyncpg

from shared.errors import ConfigurationError
from shared.logging import configure_logging, get_logger
from shared.secretbox import SecretBox, new_key
from shared.settings import Settings, load_settings
from shared.stores import subscriptions

log = get_logger("secrets")


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `secrets new-key` and `secrets reencrypt` under the `hookline` command."""
    secrets = commands.add_parser("secrets", help="manage HOOKLINE_SECRET_KEY")
    actions = secrets.add_subparsers(dest="secrets_command", required=True)
    actions.add_parser("new-key", help="print a fresh key for HOOKLINE_SECRET_KEY")
    actions.add_parser(
        "reencrypt",
        help="re-seal every subscription secret under the first key of HOOKLINE_SECRET_KEY",
    )


async def reencrypt(conn: asyncpg.Connection, box: SecretBox) -> int:
    """Re-seal every subscription's secrets under `box`'s first key, in one transaction.

    Deleted subscriptions are included. Returns the number of rows rewritten. Any secret
    that no key opens raises `ConfigurationError` and leaves the table unchanged.
    """
    async with conn.transaction():
        rows = await subscriptions.secrets_for_update(conn)
        updates = [
            (
                row["id"],
                box.reseal(row["secret"]),
                box.reseal(row["previous_secret"]) if row["previous_secret"] else None,
            )
            for row in rows
        ]
        if updates:
            await subscriptions.set_secrets(conn, updates)
    return len(updates)


async def _reencrypt_database(settings: Settings) -> int:
    box = SecretBox(settings.secret_key)
    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    try:
        return await reencrypt(conn, box)
    finally:
        await conn.close()


def _run_reencrypt() -> int:
    settings = load_settings()
    configure_logging(settings.log_format, settings.log_level)
    if settings.secret_key is None:
        print("HOOKLINE_SECRET_KEY is not set: there is no key to encrypt with", file=sys.stderr)
        return 2
    try:
        count = asyncio.run(_reencrypt_database(settings))
    except ConfigurationError as exc:
        print(f"nothing changed: {exc}", file=sys.stderr)
        return 1
    except (OSError, asyncpg.PostgresError) as exc:
        # The message names the database, never the URL (which may hold a password).
        print(f"nothing changed: the database failed: {exc}", file=sys.stderr)
        return 1
    log.info("secrets_reencrypted", subscriptions=count)
    print(f"subscriptions re-encrypted: {count}")
    return 0


def main(args: argparse.Namespace) -> int:
    """Run the `secrets` subcommand chosen in `args`; the process exit code."""
    if args.secrets_command == "new-key":
        print(new_key())
        return 0
    return _run_reencrypt()
