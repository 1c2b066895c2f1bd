"""Idempotency keys: a key belongs to its tenant, and a reuse must repeat the same event.

A key is unique within its scope, the event's `tenant_id` (an event without a tenant has a
scope of its own), for `HOOKLINE_IDEMPOTENCY_WINDOW` from its first acceptance; the window
itself is kept in the database (`store.events.insert_many`). A copy within the window must
carry the same `type` and `data`, compared as JSON values: key order and the spelling of a
number (`1`, `1.0`, `1e0`) do not matter; `true` is not `1`.
"""

from __future__ import annotations

from typing import Any

from shared.errors import IdempotencyConflict
from shared.models import EventIn
from shared.stores.events import StoredEvent


def lock_key(event: EventIn) -> str | None:
    """The in-process lock name of an event's key, or None when it has none."""
    if event.id is None:
        return None
    return f"{event.tenant_id or ''}\x00{event.id}"


def same_json(a: Any, b: Any) -> bool:
    """Whether two decoded JSON values are equal as JSON (numbers by value, bools apart)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def check_same(first: StoredEvent, copy: EventIn) -> None:
    """Raise IdempotencyConflict unless `copy` repeats the event its key first stored."""
    if first.type == copy.type and same_json(first.data, copy.data):
        return
    changed = "type" if first.type != copy.type else "data"
    raise IdempotencyConflict(
        f"the idempotency key {copy.id!r} was first used for event {first.id} with another"
        f" {changed}; a key is reused only for the same type and data within its window"
    )
