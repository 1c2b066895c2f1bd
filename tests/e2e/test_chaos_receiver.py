"""The suite's receiver: it checks signatures, and its outage refuses connections, then ends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from bench.receiver import Receiver
from shared.signing import generate_secret, secret_bytes, sign

pytestmark = pytest.mark.e2e


@pytest.fixture
async def bench_receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    await asyncio.to_thread(receiver.start)
    yield receiver
    await asyncio.to_thread(receiver.stop)


def _webhook(secret: str, seq: int) -> tuple[bytes, dict[str, str]]:
    body = b'{"type": "bench.tick", "data": {"seq": %d, "sent_at": 1.0}}' % seq
    now = int(time.time())
    signature = sign(secret_bytes(secret), f"evt_{seq}", now, body)
    headers = {
        "webhook-id": f"evt_{seq}",
        "webhook-timestamp": str(now),
        "webhook-signature": signature,
    }
    return body, headers


async def test_it_counts_forged_webhooks_and_refuses_connections_while_down(
    bench_receiver: Receiver,
) -> None:
    secret = generate_secret()
    await bench_receiver.trust("t", secret)
    async with aiohttp.ClientSession() as session:
        body, headers = _webhook(secret, 1)
        async with session.post(bench_receiver.url("t", 0), data=body, headers=headers) as r:
            assert r.status == 200
        forged_body, forged_headers = _webhook(generate_secret(), 2)
        url = bench_receiver.url("t", 0)
        async with session.post(url, data=forged_body, headers=forged_headers) as r:
            assert r.status == 200

        await bench_receiver.down()
        with pytest.raises(aiohttp.ClientConnectionError):
            async with session.post(bench_receiver.url("t", 0), data=body, headers=headers):
                pass
        await bench_receiver.up()

        body, headers = _webhook(secret, 3)
        async with session.post(bench_receiver.url("t", 0), data=body, headers=headers) as r:
            assert r.status == 200
    counts = await bench_receiver.counts()
    assert counts["bad_signatures"] == {"t": 1}
    assert sorted(seq for _, seq, *_ in await bench_receiver.collect("t")) == [1, 2, 3]
