"""Secrets at rest in the real database: unreadable in the table, loadable with the key."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from pydantic import SecretStr

from services.cli.secrets import reencrypt
from shared.errors import ConfigurationError
from shared.secretbox import ENCRYPTED_PREFIX, SecretBox, new_key
from shared.settings import Settings
from shared.signing import generate_secret, secret_bytes
from shared.stores.subscriptions import load_one


def box(*keys: str) -> SecretBox:
    return SecretBox(SecretStr(",".join(keys)))


@pytest.fixture
async def conn(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(settings.database_url.get_secret_value())
    yield connection
    await connection.close()


async def insert(
    conn: asyncpg.Connection, sub_id: str, secret: str, previous: str | None = None
) -> None:
    expires = datetime.now(tz=UTC) + timedelta(hours=24) if previous else None
    await conn.execute(
        "INSERT INTO subscriptions (id, url, event_types, secret, previous_secret,"
        " previous_secret_expires_at) VALUES ($1, 'https://example.com/h', '{*}', $2, $3, $4)",
        sub_id,
        secret,
        previous,
        expires,
    )


async def raw_secrets(conn: asyncpg.Connection) -> dict[str, tuple[str, str | None]]:
    rows = await conn.fetch("SELECT id, secret, previous_secret FROM subscriptions")
    return {r["id"]: (r["secret"], r["previous_secret"]) for r in rows}


async def test_sealed_secret_is_not_plain_in_the_table_but_loads_with_the_key(
    conn: asyncpg.Connection,
) -> None:
    key, secret = new_key(), generate_secret()
    await insert(conn, "sub_a", box(key).seal(secret))

    stored, _ = (await raw_secrets(conn))["sub_a"]
    assert stored.startswith(ENCRYPTED_PREFIX)
    assert secret not in stored
    assert secret.removeprefix("whsec_") not in stored

    loaded = await load_one(conn, "sub_a", box(key))
    assert loaded is not None
    assert loaded.keys == (secret_bytes(secret),)

    with pytest.raises(ConfigurationError):
        await load_one(conn, "sub_a", box(new_key()))


async def test_reencrypt_moves_every_secret_to_the_new_key(conn: asyncpg.Connection) -> None:
    old, new = new_key(), new_key()
    plain, current, previous = generate_secret(), generate_secret(), generate_secret()
    await insert(conn, "sub_plain", plain)
    await insert(conn, "sub_rotated", box(old).seal(current), box(old).seal(previous))

    assert await reencrypt(conn, box(new, old)) == 2

    for stored, stored_previous in (await raw_secrets(conn)).values():
        assert stored.startswith(ENCRYPTED_PREFIX)
        assert stored_previous is None or stored_previous.startswith(ENCRYPTED_PREFIX)
    only_new = box(new)
    rotated = await load_one(conn, "sub_rotated", only_new)
    assert rotated is not None
    assert rotated.keys == (secret_bytes(current), secret_bytes(previous))
    was_plain = await load_one(conn, "sub_plain", only_new)
    assert was_plain is not None
    assert was_plain.keys == (secret_bytes(plain),)


async def test_reencrypt_changes_nothing_when_one_secret_cannot_be_opened(
    conn: asyncpg.Connection,
) -> None:
    old, new, lost = new_key(), new_key(), new_key()
    await insert(conn, "sub_ok", box(old).seal(generate_secret()))
    await insert(conn, "sub_lost", box(lost).seal(generate_secret()))
    before = await raw_secrets(conn)

    with pytest.raises(ConfigurationError):
        await reencrypt(conn, box(new, old))

    assert await raw_secrets(conn) == before


async def run_cli(settings: Settings, *args: str, key: str | None) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKLINE_")}
    env["HOOKLINE_DATABASE_URL"] = settings.database_url.get_secret_value()
    if key is not None:
        env["HOOKLINE_SECRET_KEY"] = key
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_cli_new_key_then_reencrypt(settings: Settings, conn: asyncpg.Connection) -> None:
    code, out, _ = await run_cli(settings, "secrets", "new-key", key=None)
    assert code == 0
    key = out.strip()
    secret = generate_secret()
    await insert(conn, "sub_cli", secret)

    code, out, err = await run_cli(settings, "secrets", "reencrypt", key=key)

    assert code == 0, err
    assert "re-encrypted: 1" in out
    stored, _ = (await raw_secrets(conn))["sub_cli"]
    assert stored.startswith(ENCRYPTED_PREFIX)
    assert box(key).open(stored) == secret
    assert key not in out + err


async def test_cli_reencrypt_refuses_without_a_key(settings: Settings) -> None:
    code, _, err = await run_cli(settings, "secrets", "reencrypt", key=None)
    assert code == 2
    assert "HOOKLINE_SECRET_KEY is not set" in err
