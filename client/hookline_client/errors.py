"""The one exception a failed hand-over raises, saying why."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

Reason = Literal["timeout", "nack", "unroutable", "unreachable"]


class PublishError(Exception):
    """An event was not confirmed by RabbitMQ, so Hookline may not have it.

    `reason` is `timeout` (no confirm within the bound), `nack` (the broker refused it),
    `unroutable` (no exchange or no queue took it: is Hookline's ingest running in this
    namespace?) or `unreachable` (no connection to the broker). `key` is the idempotency key
    of the event that failed: sending it again with the same key is safe, Hookline
    delivers it once. From `notify_many`, `confirmed` lists the keys that were confirmed
    (in the order given) and `failed` every key that was not.
    """

    def __init__(
        self,
        reason: Reason,
        message: str,
        *,
        key: str | None = None,
        confirmed: Sequence[str] = (),
        failed: Sequence[str] = (),
    ) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason: Reason = reason
        self.key = key
        self.confirmed = list(confirmed)
        self.failed = list(failed) if failed else ([key] if key is not None else [])
