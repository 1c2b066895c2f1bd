"""The ceiling: the least work a webhook sender can do, as one process.

`python -m bench.ceiling` fills a queue of its own with COUNT webhook-shaped messages
(confirmed), then drains it: consume with a prefetch, POST each body to the receiver with one
keep-alive aiohttp session, ack after a 2xx. No database, no signing, no retries, no metrics:
what this machine can deliver at all, for comparison. It prints its timings as one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from typing import IO

import aio_pika
import aiohttp
import orjson
from aio_pika.abc import AbstractIncomingMessage

from bench.procs import REPO_ROOT, die_with_parent

PREFETCH = 512
SUB_HEADER = "x-bench-sub"


def ceiling_queue_name(namespace: str) -> str:
    """The one queue the ceiling uses: outside Hookline's topology, in the bench's namespace."""
    return f"{namespace}.bench.ceiling"


async def _fill(channel: aio_pika.abc.AbstractChannel, queue: str, count: int, subs: int) -> None:
    window = asyncio.Semaphore(1024)
    pending: set[asyncio.Task[None]] = set()

    async def publish(seq: int, sub: int) -> None:
        body = orjson.dumps(
            {
                "type": "bench.tick",
                "timestamp": "1970-01-01T00:00:00.000Z",
                "data": {"seq": seq, "sent_at": time.time()},
            }
        )
        message = aio_pika.Message(
            body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, headers={SUB_HEADER: sub}
        )
        try:
            await channel.default_exchange.publish(message, routing_key=queue, timeout=30)
        finally:
            window.release()

    for i in range(count):
        await window.acquire()
        task = asyncio.create_task(publish(i // subs, i % subs))
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        await asyncio.gather(*pending)


async def _drain(
    channel: aio_pika.abc.AbstractChannel, queue_name: str, count: int, target: str
) -> None:
    queue = await channel.get_queue(queue_name)
    finished = asyncio.Event()
    acked = 0
    connector = aiohttp.TCPConnector(limit=PREFETCH)
    timeout = aiohttp.ClientTimeout(total=15)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def post(message: AbstractIncomingMessage) -> None:
            nonlocal acked
            sub = int(str(message.headers.get(SUB_HEADER, 0)))
            try:
                async with session.post(
                    f"{target}/{sub}",
                    data=message.body,
                    headers={"content-type": "application/json", "webhook-id": str(sub)},
                ) as resp:
                    await resp.read()
                    ok = 200 <= resp.status < 300
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            if not ok:
                # A pause, so a receiver that is down is not hammered by instant redeliveries.
                await asyncio.sleep(0.5)
                await message.nack(requeue=True)
                return
            await message.ack()
            acked += 1
            if acked >= count:
                finished.set()

        # The prefetch bounds the POSTs in flight: the broker sends no more than that unacked.
        consumer_tag = await queue.consume(post)
        await asyncio.wait_for(finished.wait(), timeout=max(60.0, count / 100))
        await queue.cancel(consumer_tag)


async def run(
    amqp_url: str, namespace: str, count: int, subs: int, target: str
) -> dict[str, float]:
    """Fill, then drain; returns the two phases' durations."""
    queue_name = ceiling_queue_name(namespace)
    connection = await aio_pika.connect(amqp_url, timeout=10)
    try:
        channel = await connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=PREFETCH)
        queue = await channel.declare_queue(queue_name, durable=True)
        await queue.purge()
        started = time.time()
        await _fill(channel, queue_name, count, subs)
        filled = time.time()
        await _drain(channel, queue_name, count, target)
        drained = time.time()
        await queue.delete(if_unused=False, if_empty=False)
    finally:
        await connection.close()
    return {"fill_s": filled - started, "drain_s": drained - filled, "count": float(count)}


async def start_ceiling(
    amqp_url: str, namespace: str, count: int, subs: int, target: str, log: IO[bytes]
) -> asyncio.subprocess.Process:
    """Start `python -m bench.ceiling` in its own process; its stdout is the timings line."""
    return await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "bench.ceiling", "--amqp-url", amqp_url),
        *("--namespace", namespace, "--count", str(count), "--target", target),
        *("--subscriptions", str(subs)),
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=log,
        start_new_session=True,
        preexec_fn=die_with_parent,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ceiling", description=__doc__)
    parser.add_argument("--amqp-url", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--count", type=int, required=True, help="messages in all")
    parser.add_argument("--subscriptions", type=int, required=True)
    parser.add_argument("--target", required=True, help="receiver URL prefix; /<sub> is added")
    args = parser.parse_args(argv)
    import uvloop

    uvloop.install()
    result = asyncio.run(
        run(args.amqp_url, args.namespace, args.count, args.subscriptions, args.target)
    )
    print(orjson.dumps(result).decode(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
