"""scripts/receiver.py, the README tour's receiver, accepts real signatures and refuses others."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from shared.signing import generate_secret, secret_bytes, signature_header
from tests.support import free_port

pytestmark = pytest.mark.e2e

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "receiver.py"
SECRET = generate_secret()


@pytest.fixture
async def receiver_url() -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SCRIPT),
        "--port",
        str(port),
        "--secret",
        SECRET,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/hooks"
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            try:
                async with session.get(url):
                    break
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)
    yield url, proc
    proc.terminate()
    await proc.wait()


def signed_headers(body: bytes, key: bytes) -> dict[str, str]:
    ts = int(time.time())
    return {
        "webhook-id": "evt_test",
        "webhook-timestamp": str(ts),
        "webhook-signature": signature_header([key], "evt_test", ts, body),
        "content-type": "application/json",
    }


async def test_prints_a_verified_webhook_and_refuses_a_forged_one(
    receiver_url: tuple[str, asyncio.subprocess.Process],
) -> None:
    url, proc = receiver_url
    body = b'{"type": "invoice.paid", "timestamp": "2024-01-01T00:00:00.000Z", "data": {"n": 1}}'
    async with aiohttp.ClientSession() as session:
        async with session.post(
            url, data=body, headers=signed_headers(body, secret_bytes(SECRET))
        ) as r:
            assert r.status == 200
        forged = signed_headers(body, secret_bytes(generate_secret()))
        async with session.post(url, data=body, headers=forged) as r:
            assert r.status == 400
    assert proc.stdout is not None
    first = await asyncio.wait_for(proc.stdout.readline(), 10)
    second = await asyncio.wait_for(proc.stdout.readline(), 10)
    assert b"evt_test [verified] invoice.paid" in first
    assert b"no signature matches" in second
