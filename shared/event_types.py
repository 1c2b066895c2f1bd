"""The event-type catalogue in memory, each JSON Schema compiled once (issue 3).

Ingest checks every event's `data` against its type's schema, so the catalogue is read on
the hot path and must never wait on the database. A `shared.changes.ChangeFollower` LISTENs
on `hookline_event_types` (migration 0001's trigger sends the changed name) and the row is
read again; after its connection was lost and restored everything is read again, since
notifications sent meanwhile are gone. Writers in the same process call
`apply()` after their write, so a type is usable the moment its API call answers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import SchemaError, ValidationError
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for

from shared.changes import EVENT_TYPES, ChangeFollower, Channel
from shared.errors import StorageUnavailable
from shared.logging import get_logger
from shared.stores import event_types as store
from shared.supervision import spawn

_RETRY_S = 1.0
"""How soon a refresh that failed is tried again (the follower reconnects meanwhile)."""
_MAX_ERRORS = 20
"""Schema violations reported per event: enough to fix a payload, bounded for headers."""

log = get_logger("event_types")


@dataclass(frozen=True, slots=True)
class EventType:
    """One catalogue entry; `validator` is None when the type has no schema."""

    name: str
    description: str
    schema: dict[str, Any] | None
    validator: Validator | None


def compile_schema(schema: dict[str, Any]) -> Validator:
    """A validator for `schema` (its `$schema` draft, else 2020-12).

    Raises `jsonschema.exceptions.SchemaError` when `schema` is not a valid JSON Schema.
    """
    cls = validator_for(schema, default=Draft202012Validator)
    cls.check_schema(schema)
    validator: Validator = cls(schema, format_checker=FormatChecker())
    return validator


def schema_error(schema: dict[str, Any]) -> str | None:
    """Why `schema` is not a valid JSON Schema, or None when it is."""
    try:
        compile_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path)
        return f"{where}: {exc.message}" if where else exc.message
    return None


def data_errors(validator: Validator, data: Any) -> list[tuple[str, str]]:
    """(path, message) of each way `data` fails the schema, paths like `data.items.0.sku`."""
    found: list[tuple[str, str]] = []
    for error in validator.iter_errors(data):
        path = ".".join(["data", *(str(p) for p in error.absolute_path)])
        found.append((path, _rule_broken(error)))
        if len(found) >= _MAX_ERRORS:
            break
    return sorted(found)


def _rule_broken(error: ValidationError) -> str:
    """What rule of the schema failed, in words taken from the schema only.

    jsonschema's own messages quote the failing value, and these messages reach logs,
    queue headers and API answers: a card number in `data` must not.
    """
    rule, value = str(error.validator), error.validator_value
    if rule == "required" and isinstance(value, list):
        missing = [
            name
            for name in value
            if isinstance(error.instance, dict) and name not in error.instance
        ]
        return f"is missing required properties {missing}"
    if rule == "additionalProperties" and isinstance(error.instance, dict):
        return "has properties the schema does not allow"
    words = {
        "type": "must be of type",
        "pattern": "must match the pattern",
        "enum": "must be one of",
        "const": "must equal",
        "format": "must be in the format",
    }.get(rule, f"must satisfy `{rule}`")
    text = f"{words} {value!r}" if not isinstance(value, dict | bool) else words
    return text if len(text) <= 200 else text[:197] + "..."


def entry_from_row(name: str, description: str, schema_json: str | None) -> EventType:
    """A catalogue entry from a stored row (schema as JSON text), compiling its schema."""
    schema = orjson.loads(schema_json) if schema_json is not None else None
    validator = None
    if isinstance(schema, dict):
        try:
            validator = compile_schema(schema)
        except SchemaError as exc:
            # Only a write that bypassed the API can store one; checking nothing beats
            # refusing every event of the type.
            log.error("event_type_schema_invalid", event_type=name, error=exc.message)
    return EventType(name=name, description=description, schema=schema, validator=validator)


class Catalogue:
    """Every event type, by name. `start()` before use, `close()` after.

    Kept fresh by a `ChangeFollower` on `hookline_event_types`: a notified name is read
    again, and after the follower reconnected (notifications may have been lost meanwhile)
    the whole catalogue is.
    """

    def __init__(self, database_url: str, *, service: str = "ingest") -> None:
        self._types: dict[str, EventType] = {}
        self._dirty: set[str] = set()
        self._stale = True
        """Everything must be read again: before the first load, and after a reconnect."""
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._follower = ChangeFollower(
            database_url,
            service=service,
            channels=[Channel(EVENT_TYPES, on_notify=self._on_notify, on_reset=self._on_reset)],
        )

    def get(self, name: str) -> EventType | None:
        """The entry of `name`, or None when it is not in the catalogue."""
        return self._types.get(name)

    def __iter__(self) -> Iterator[EventType]:
        return iter(list(self._types.values()))

    @property
    def connected(self) -> bool:
        """True while the catalogue listens for changes and holds every type (readiness)."""
        running = self._task is not None and not self._task.done()
        return running and self._follower.ready() and not self._stale

    def apply(self, name: str, entry: EventType | None) -> None:
        """Record a change this process just wrote (None: deleted), before NOTIFY arrives."""
        if entry is None:
            self._types.pop(name, None)
        else:
            self._types[name] = entry

    async def start(self) -> None:
        """LISTEN and load the catalogue; raises StorageUnavailable when it cannot."""
        await self._follower.start()
        try:
            await self._refresh()
        except StorageUnavailable:
            await self._follower.close()
            raise
        log.info("event_types_loaded", count=len(self._types))
        self._task = spawn(self._serve(), name="event_type_catalogue")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._follower.close()

    def _on_notify(self, name: str) -> None:
        self._dirty.add(name)
        self._wake.set()

    def _on_reset(self) -> None:
        self._stale = True
        self._wake.set()

    async def _serve(self) -> None:
        """Read again what changed, for as long as the process lives."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._refresh()
            except StorageUnavailable as exc:
                # The follower reconnects and resets us; until then, try again now and then.
                log.warning("event_types_refresh_failed", error=str(exc))
                await asyncio.sleep(_RETRY_S)
                self._wake.set()

    async def _refresh(self) -> None:
        if self._stale:
            self._stale, self._dirty = False, set()
            try:
                rows = await self._follower.run(store.catalogue)
            except StorageUnavailable:
                self._stale = True
                raise
            self._types = {
                r["name"]: entry_from_row(r["name"], r["description"], r["schema"]) for r in rows
            }
            return
        if not self._dirty:
            return
        names, self._dirty = sorted(self._dirty), set()
        try:
            rows = await self._follower.run(lambda c: store.catalogue_of(c, names))
        except StorageUnavailable:
            self._dirty.update(names)
            raise
        found = {r["name"]: r for r in rows}
        for name in names:
            row = found.get(name)
            entry = entry_from_row(name, row["description"], row["schema"]) if row else None
            self.apply(name, entry)
