"""Where a delivery goes when it is not done: a retry queue (to wait) or `{ns}.dead` (to stay),
or, split off a batch message, the work queue on its own.

Every publish is mandatory and waits for the broker's confirm (within PUBLISH_TIMEOUT_S):
a missing queue makes it fail rather than drop the message. The caller acks the consumed
message only after it, so a delivery is never in neither place.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aio_pika.abc import AbstractChannel
from aiormq import spec
from aiormq.exceptions import PublishError

from shared.amqp import declare
from shared.errors import BrokerUnavailable
from shared.logging import get_logger
from shared.topology import Topology
from shared.wire.messages import H_DEFERRALS, H_ERROR, DeliveryMessage
from shared.wire.properties import delivery_properties, json_properties
from shared.wire.publish import PUBLISH_TIMEOUT_S, publish_burst

log = get_logger("sender")

UNROUTABLE: tuple[type[BaseException], ...] = (PublishError, BrokerUnavailable)
"""What a mandatory publish to a queue that is gone raises: returned by the broker."""


class Requeue:
    """Confirmed publishing to the retry queues and the dead queue of one namespace.

    A queue deleted by hand (by an operator, or a policy) makes a publish to it come back
    unroutable. The topology is then declared again, once for all publishes failing at that
    moment, and the publish tried once more: the delivery goes where it should instead of
    being nacked back and sent to its receiver again until the next restart.
    """

    def __init__(self, channel: AbstractChannel, topology: Topology) -> None:
        self._channel = channel
        self._topology = topology
        self._redeclaring = asyncio.Lock()
        self._declared_at = 0.0
        self.healthy = True
        """False after a failed publish until the next one that is confirmed (readiness)."""

    async def _publish(
        self, body: bytes, queue_name: str, properties: spec.Basic.Properties
    ) -> None:
        """Publish to `queue_name` (mandatory, confirmed), straight on aiormq: about half the
        CPU of an aio-pika publish with its own timeout (measured: 0.27 ms per publish on the
        bench machine, as much as a whole successful delivery; deferrals are thousands)."""

        async def once() -> None:
            async with asyncio.timeout(PUBLISH_TIMEOUT_S):
                [failure] = await publish_burst(self._channel, "", [(body, queue_name, properties)])
            if failure is not None:
                raise failure

        await self._guarded(once)

    async def _publish_delivery(
        self, msg: DeliveryMessage, queue_name: str, extra_headers: dict[str, Any] | None = None
    ) -> None:
        await self._publish(
            msg.body, queue_name, delivery_properties(msg, extra_headers=extra_headers)
        )

    async def _guarded(self, publish: Callable[[], Awaitable[None]]) -> None:
        """Run `publish`; when it comes back unroutable, declare the topology again and run
        it once more. Keeps `healthy` up to date."""
        try:
            try:
                started = time.monotonic()
                await publish()
            except UNROUTABLE as exc:
                await self._redeclare(since=started, cause=exc)
                await publish()
        except BaseException:
            self.healthy = False
            raise
        self.healthy = True

    async def _redeclare(self, *, since: float, cause: BaseException) -> None:
        async with self._redeclaring:
            if self._declared_at >= since:
                return  # declared again by another publish since this one started
            log.warning("sender_topology_redeclared", cause=f"{type(cause).__name__}: {cause}")
            exchanges, queues = self._topology.for_sender()
            # Bounded: a connection lost meanwhile must not hold every publish behind it.
            async with asyncio.timeout(PUBLISH_TIMEOUT_S):
                await declare(self._channel, exchanges, queues)
            self._declared_at = time.monotonic()

    async def retry(self, msg: DeliveryMessage, delay_s: float, *, deferrals: int = 0) -> None:
        """Send `msg` (its attempt number as given) to wait `delay_s`, a delay of the schedule."""
        queue = self._topology.retry_queue(delay_s)
        await self._publish_delivery(
            msg, queue.name, {H_DEFERRALS: deferrals} if deferrals else None
        )

    async def alone(self, msg: DeliveryMessage) -> None:
        """Put `msg` back in the sender's work queue as a plain message (split off a batch)."""
        await self._publish_delivery(msg, self._topology.deliveries_queue.name)

    async def dead(self, msg: DeliveryMessage, error: str) -> None:
        """Put `msg` in the dead queue with why it died; its ids are headers there too, for
        whoever inspects the queue."""
        await self._publish_delivery(
            msg, self._topology.dead_queue.name, {**msg.readable_headers(), H_ERROR: error}
        )

    async def dead_raw(
        self,
        headers: dict[str, Any] | None,
        body: bytes,
        error: str,
        *,
        message_id: str | None = None,
    ) -> None:
        """Put a message that may not even be a delivery in the dead queue, headers kept."""
        headers = {**(headers or {}), H_ERROR: error}
        properties = json_properties(headers=headers, message_id=message_id)
        await self._publish(body, self._topology.dead_queue.name, properties)
