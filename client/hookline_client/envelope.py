"""The event envelope Hookline's ingest accepts, checked here before anything is sent.

The rules are those of ingest (CONTRACT section 2, `shared/models.py`): a type name of two
to four lower-case dot-separated words, `data` a JSON object without NUL characters, an
optional idempotency key of 1 to 255 characters, an optional tenant id, and a body of at
most 256 KiB. A broken event then fails with `ValueError` in the producer's own tests
instead of ending in `{ns}.ingest.rejected`.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

EVENT_TYPE_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*){1,3}$")
TENANT_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
KEY_MAX = 255
MAX_PAYLOAD_BYTES = 256 * 1024
_INT_RANGE = (-(2**63), 2**64 - 1)
"""Integers ingest's JSON parser reads: a larger one would make the whole body unreadable."""


@dataclass(frozen=True, slots=True)
class Event:
    """One event for `notify_many`: the arguments of `notify`."""

    type: str
    data: Mapping[str, Any] = field(default_factory=dict)
    id: str | None = None
    tenant_id: str | None = None


@dataclass(frozen=True, slots=True)
class Envelope:
    """A checked event: its idempotency key, routing key (the type) and JSON body."""

    key: str
    type: str
    body: bytes


def new_key() -> str:
    """A fresh idempotency key, unique without coordination (a random UUID)."""
    return f"hl_{uuid.uuid4().hex}"


def envelope(
    type: str,
    data: Mapping[str, Any] | None,
    *,
    id: str | None = None,
    tenant_id: str | None = None,
    max_payload: int = MAX_PAYLOAD_BYTES,
) -> Envelope:
    """Check an event as ingest would and build its body; raises ValueError saying what."""
    check_type(type)
    key = new_key() if id is None else check_key(id)
    if tenant_id is not None:
        check_tenant(tenant_id)
    value: dict[str, Any] = {"type": type, "data": check_data(data), "id": key}
    if tenant_id is not None:
        value["tenant_id"] = tenant_id
    body = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
    if len(body) > max_payload:
        raise ValueError(
            f"the event {type} is {len(body)} bytes as JSON, more than the {max_payload} allowed"
        )
    return Envelope(key, type, body)


def check_type(type: object) -> str:
    if not isinstance(type, str) or not EVENT_TYPE_RE.match(type):
        raise ValueError(
            f"invalid event type {type!r}: two to four lower-case dot-separated words,"
            " as invoice.paid (pattern ^[a-z][a-z0-9_]*(\\.[a-z][a-z0-9_]*){1,3}$)"
        )
    return type


def check_key(key: object) -> str:
    if not isinstance(key, str) or not 1 <= len(key) <= KEY_MAX or "\x00" in key:
        raise ValueError(f"invalid id {key!r}: a string of 1 to {KEY_MAX} characters without NUL")
    return key


def check_tenant(tenant_id: object) -> str:
    if not isinstance(tenant_id, str) or not TENANT_ID_RE.match(tenant_id):
        raise ValueError(
            f"invalid tenant_id {tenant_id!r}: 1 to 128 characters of letters, digits and"
            " _ . : - (starting with a letter or digit)"
        )
    return tenant_id


def check_data(data: Mapping[str, Any] | None) -> dict[str, Any]:
    """`data` as a plain dict, once it is known to be JSON ingest accepts."""
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ValueError(f"data must be a JSON object (a mapping), not {type(data).__name__}")
    plain = dict(data)
    try:
        text = json.dumps(plain, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"data is not JSON-serialisable: {exc}") from None
    _check_values(json.loads(text))
    return plain


def _check_values(value: Any) -> None:
    """Refuse what JSON can carry but ingest cannot store: NUL characters, huge integers."""
    stack: list[tuple[Any, str]] = [(value, "data")]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str) and "\x00" in item:
            raise ValueError(f"data must not contain a NUL character (\\u0000), found at {where}")
        if isinstance(item, int) and not _INT_RANGE[0] <= item <= _INT_RANGE[1]:
            raise ValueError(f"data holds an integer out of the 64-bit range at {where}")
        if isinstance(item, dict):
            for key, child in item.items():
                if "\x00" in key:
                    raise ValueError(f"data must not contain a NUL character in a key at {where}")
                stack.append((child, f"{where}.{key}"))
        elif isinstance(item, list):
            stack.extend((child, f"{where}[{i}]") for i, child in enumerate(item))
