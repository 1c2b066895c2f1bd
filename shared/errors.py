"""The one exception tree of Hookline; broker and database errors are translated into it."""

from __future__ import annotations

import aio_pika
import aiormq
import asyncpg


class HooklineError(Exception):
    """Root of every error Hookline raises on purpose."""


class ConfigurationError(HooklineError):
    """The settings cannot work as given."""


class InvalidEvent(HooklineError):
    """An event cannot be accepted; `reason` is a short machine label, the message says why."""

    def __init__(self, reason: str, message: str, *, errors: list[dict[str, str]] | None = None):
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.errors = errors or []


class TargetRefused(HooklineError):
    """A webhook target URL may not be called (scheme, credentials, or a non-public address)."""


class StorageUnavailable(HooklineError):
    """Postgres could not be reached or failed; the operation may be retried."""


class BrokerUnavailable(HooklineError):
    """RabbitMQ could not be reached or did not confirm; the operation may be retried."""


class NotFound(HooklineError):
    """The named resource does not exist."""


class Conflict(HooklineError):
    """The request conflicts with the stored state."""


class IdempotencyConflict(Conflict):
    """An idempotency key reused within its window for a different `type` or `data`."""

    reason = "idempotency_conflict"


DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    # A pooled connection whose backend was terminated can fail this way; a retry heals it.
    asyncpg.InternalClientError,
)
"""What Postgres being unreachable or failing raises: catch these, raise StorageUnavailable.

asyncpg's IntegrityConstraintViolationError is a PostgresError too: catch it first where a
bad row must not be retried."""

BROKER_ERRORS: tuple[type[BaseException], ...] = (
    aio_pika.exceptions.AMQPError,
    aiormq.exceptions.AMQPError,
    ConnectionError,
    TimeoutError,
    BrokerUnavailable,
)
"""What RabbitMQ being unreachable, closing a channel, returning or not confirming a publish
raises (an unroutable mandatory publish included)."""

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    *DATABASE_ERRORS,
    *BROKER_ERRORS,
    StorageUnavailable,
)
"""Outages: whatever failed with one of these is worth trying again, without limit."""
