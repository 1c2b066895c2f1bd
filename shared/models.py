"""The event envelope published to Hookline (CONTRACT section 2) and the webhook body it
becomes; the messages between the services are `shared.wire`'s."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

EVENT_TYPE_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*){1,3}$"
EVENT_TYPE_RE = re.compile(EVENT_TYPE_PATTERN)
TENANT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
IDEMPOTENCY_KEY_MAX = 255


class EventIn(BaseModel):
    """An event as published over AMQP or `POST /v1/events` (CONTRACT section 2)."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(pattern=EVENT_TYPE_PATTERN, description="Event type, as `invoice.paid`.")
    data: dict[str, Any] = Field(default_factory=dict, description="The event's payload.")
    id: str | None = Field(
        None,
        min_length=1,
        max_length=IDEMPOTENCY_KEY_MAX,
        description="Idempotency key: the same id again is stored and delivered once.",
    )
    tenant_id: str | None = Field(
        None,
        pattern=TENANT_ID_PATTERN,
        description="Only subscriptions with the same tenant_id receive the event.",
    )

    # Postgres stores neither text nor jsonb holding a NUL character: refused here, such an
    # event gets a clear reason (422 / invalid_envelope) instead of failing to be stored.
    @field_validator("id")
    @classmethod
    def _id_without_nul(cls, value: str | None) -> str | None:
        if value is not None and "\x00" in value:
            raise ValueError("must not contain a NUL character (\\u0000)")
        return value

    @field_validator("data")
    @classmethod
    def _data_without_nul(cls, value: dict[str, Any]) -> dict[str, Any]:
        where = nul_path(value)
        if where is not None:
            raise ValueError(f"must not contain a NUL character (\\u0000), found at {where}")
        return value


def nul_path(value: Any, root: str = "data") -> str | None:
    """Where a decoded JSON value holds a NUL character in a key or string, or None.

    A walk of the value (no re-serializing); the path reads like `data.items[2].name`.
    """
    stack: list[tuple[Any, str]] = [(value, root)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return where
        elif isinstance(item, dict):
            for key, child in item.items():
                if "\x00" in key:
                    return f"{where} (a key)"
                if isinstance(child, dict | list | str):
                    stack.append((child, f"{where}.{key}"))
        elif isinstance(item, list):
            stack.extend(
                (child, f"{where}[{i}]")
                for i, child in enumerate(item)
                if isinstance(child, dict | list | str)
            )
    return None


def webhook_body(event_type: str, created_at: datetime, data: dict[str, Any]) -> bytes:
    """The body POSTed to receivers (CONTRACT section 4)."""
    return orjson.dumps({"type": event_type, "timestamp": rfc3339(created_at), "data": data})


def rfc3339(moment: datetime) -> str:
    """UTC RFC 3339 with milliseconds and a `Z`."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
