"""The one exception tree of Hookline; broker and database errors are translated into it."""

from __future__ import annotations


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
