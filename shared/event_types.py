"""The event-type catalogue in memory, each JSON Schema compiled once (issue 3).

Ingest checks every event's `data` against its type's schema, so the catalogue is read on
the hot path and must never wait on the database. One dedicated connection LISTENs on
`hookline_event_types` (migration 0001's trigger sends the changed name) and reloads that
row; after the connection is lost it reconnects with a capped backoff and reloads
everything, since notifications sent meanwhile are gone. Writers in the same process call
`apply()` after their write, so a type is usable the moment its API call answers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import SchemaError, ValidationError
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for

from shared.errors import DATABASE_ERRORS, StorageUnavailable
from shared.logging import get_logger
from shared.sql import queries
from shared.supervision import spawn

_EVENT_TYPES_SQL = queries("event_types")

CHANNEL = "hookline_event_types"

_BACKOFF_FIRST_S = 0.1
_BACKOFF_MAX_S = 5.0
_KEEPALIVE_S = 5.0
_MAX_ERRORS = 20
"""Schema violations reported per event: enough to fix a payload, bounded for headers."""
_CONNECTION_ERRORS = DATABASE_ERRORS

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
    """Every event type, by name. `start()` before use, `close()` after."""

    def __init__(self, database_url: str) -> None:
        self._database_url = database_url
        self._types: dict[str, EventType] = {}
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._connected = False
        self._task: asyncio.Task[None] | None = None
        self._conn: asyncpg.Connection | None = None

    def get(self, name: str) -> EventType | None:
        """The entry of `name`, or None when it is not in the catalogue."""
        return self._types.get(name)

    def __iter__(self) -> Iterator[EventType]:
        return iter(list(self._types.values()))

    @property
    def connected(self) -> bool:
        """True while the catalogue listens for changes (a readiness check)."""
        return self._connected

    def apply(self, name: str, entry: EventType | None) -> None:
        """Record a change this process just wrote (None: deleted), before NOTIFY arrives."""
        if entry is None:
            self._types.pop(name, None)
        else:
            self._types[name] = entry

    async def start(self) -> None:
        """Connect, LISTEN and load the catalogue; raises StorageUnavailable when it cannot."""
        try:
            conn = await self._connect()
        except _CONNECTION_ERRORS as exc:
            raise StorageUnavailable(f"cannot load the event-type catalogue: {exc}") from exc
        self._task = spawn(self._serve(conn), name="event_type_catalogue")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._conn is not None:
            with contextlib.suppress(*_CONNECTION_ERRORS):
                await self._conn.close(timeout=2)
            self._conn = None

    async def _connect(self) -> asyncpg.Connection:
        conn = await asyncpg.connect(self._database_url, timeout=10)
        try:
            conn.add_termination_listener(lambda _: self._wake.set())
            # LISTEN before loading: a change made during the load is then notified too.
            await conn.add_listener(CHANNEL, self._on_notify)
            rows = await conn.fetch(_EVENT_TYPES_SQL["catalogue"])
        except BaseException:
            await conn.close()
            raise
        self._types = {
            r["name"]: entry_from_row(r["name"], r["description"], r["schema"]) for r in rows
        }
        self._conn = conn
        self._connected = True
        log.info("event_types_loaded", count=len(self._types))
        return conn

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        self._dirty.add(str(payload))
        self._wake.set()

    async def _serve(self, conn: asyncpg.Connection) -> None:
        backoff_s = _BACKOFF_FIRST_S
        while True:
            try:
                await self._follow(conn)
            except _CONNECTION_ERRORS as exc:
                log.warning("event_types_connection_lost", error=str(exc))
            self._connected = False
            with contextlib.suppress(*_CONNECTION_ERRORS):
                await conn.close(timeout=1)
            while True:
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, _BACKOFF_MAX_S)
                try:
                    conn = await self._connect()
                    break
                except _CONNECTION_ERRORS as exc:
                    log.warning("event_types_reconnect_failed", error=str(exc))
            backoff_s = _BACKOFF_FIRST_S

    async def _follow(self, conn: asyncpg.Connection) -> None:
        """Reload notified rows until the connection is lost (then raise or return)."""
        while not conn.is_closed():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), _KEEPALIVE_S)
            self._wake.clear()
            if not self._dirty:
                await conn.execute("SELECT 1", timeout=_KEEPALIVE_S)
                continue
            names, self._dirty = sorted(self._dirty), set()
            rows = await conn.fetch(_EVENT_TYPES_SQL["catalogue_of"], names)
            found = {r["name"]: r for r in rows}
            for name in names:
                row = found.get(name)
                entry = entry_from_row(name, row["description"], row["schema"]) if row else None
                self.apply(name, entry)
