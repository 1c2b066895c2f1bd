"""Queue depths while a scenario runs: where messages pile up is the slowest stage."""

from __future__ import annotations

import asyncio
import time

import aio_pika

from shared.topology import Topology

INTERVAL_S = 1.0


class QueueWatcher:
    """Polls the ready-message count of a namespace's work queues (passive declares)."""

    def __init__(self, amqp_url: str, namespace: str) -> None:
        topology = Topology(namespace, ())
        self._amqp_url = amqp_url
        self._names = {
            "ingest": topology.ingest_queue.name,
            "fanout": topology.fanout_queue.name,
            "deliveries": topology.deliveries_queue.name,
        }
        self.peaks: dict[str, int] = dict.fromkeys(self._names, 0)
        self.samples: list[tuple[float, dict[str, int]]] = []
        self._task: asyncio.Task[None] | None = None

    async def _poll(self, max_samples: int) -> None:
        connection = await aio_pika.connect(self._amqp_url, timeout=10)
        try:
            channel = await connection.channel()
            for _ in range(max_samples):
                depths: dict[str, int] = {}
                for stage, name in self._names.items():
                    queue = await channel.declare_queue(name, passive=True)
                    depths[stage] = queue.declaration_result.message_count or 0
                    self.peaks[stage] = max(self.peaks[stage], depths[stage])
                self.samples.append((time.time(), depths))
                await asyncio.sleep(INTERVAL_S)
        finally:
            await connection.close()

    def start(self, max_s: float = 3600.0) -> None:
        self._task = asyncio.create_task(self._poll(int(max_s / INTERVAL_S)), name="queue-watch")

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        except aio_pika.exceptions.AMQPError:
            pass  # a lost diagnostic, not a failed run

    def summary(self) -> str:
        peaks = ", ".join(f"{stage} {depth}" for stage, depth in self.peaks.items())
        return f"peak ready messages by queue: {peaks}"
