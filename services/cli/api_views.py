"""How each API answer reads for people: the columns of lists, the fields of one resource."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TextIO

from services.cli.output import Column, block, table

View = Callable[[Any, TextIO, TextIO], None]


def _status(row: dict[str, Any]) -> str:
    reason = row.get("disabled_reason")
    return f"{row['status']} ({reason})" if reason else str(row["status"])


_SUBSCRIPTION_COLUMNS: list[Column] = [
    ("ID", lambda r: r["id"]),
    (
        "STATUS",
        lambda r: r["status"] + (f" ({r['disabled_reason']})" if r.get("disabled_reason") else ""),
    ),
    ("EVENT TYPES", lambda r: r["event_types"]),
    ("TENANT", lambda r: r.get("tenant_id")),
    ("URL", lambda r: r["url"]),
]
_SUBSCRIPTION_KEYS = (
    "id", "url", "event_types", "status", "disabled_reason", "description", "tenant_id",
    "secret", "previous_secret_expires_at", "created_at", "updated_at",
)  # fmt: skip
_DELIVERY_COLUMNS: list[Column] = [
    ("ID", lambda r: r["id"]),
    ("STATUS", lambda r: r["status"]),
    ("ATTEMPTS", lambda r: r["attempts"]),
    ("LAST CODE", lambda r: r.get("last_status_code")),
    ("EVENT", lambda r: r["event_id"]),
    ("TYPE", lambda r: r["event_type"]),
    ("CREATED", lambda r: r["created_at"]),
]
_DELIVERY_KEYS = (
    "id", "event_id", "subscription_id", "event_type", "status", "attempts",
    "last_status_code", "last_error", "last_attempt_at", "next_attempt_at", "created_at",
)  # fmt: skip
_ATTEMPT_COLUMNS: list[Column] = [
    ("#", lambda r: r["attempt"]),
    ("AT", lambda r: r["attempted_at"]),
    ("OUTCOME", lambda r: r["outcome"]),
    ("CODE", lambda r: r.get("status_code")),
    ("MS", lambda r: r["duration_ms"]),
    ("ERROR", lambda r: r.get("error")),
]
_EVENT_KEYS = (
    "id",
    "type",
    "tenant_id",
    "idempotency_key",
    "source",
    "created_at",
    "dispatched_at",
    "data",
)
_EVENT_TYPE_COLUMNS: list[Column] = [
    ("NAME", lambda r: r["name"]),
    ("SCHEMA", lambda r: "yes" if r.get("schema") else "-"),
    ("DESCRIPTION", lambda r: r.get("description") or "-"),
]


def _page(columns: list[Column]) -> View:
    def show(answer: Any, out: TextIO, err: TextIO) -> None:
        table(answer["data"], columns, out)
        if answer.get("next_cursor"):
            print(f"more: --cursor {answer['next_cursor']}", file=err)

    return show


def _one(keys: tuple[str, ...]) -> View:
    def show(answer: Any, out: TextIO, err: TextIO) -> None:
        block(answer, keys, out)

    return show


def _event_detail(answer: Any, out: TextIO, err: TextIO) -> None:
    block(answer, _EVENT_KEYS, out)
    print("\ndeliveries:", file=out)
    columns: list[Column] = [
        ("ID", lambda r: r["id"]),
        ("SUBSCRIPTION", lambda r: r["subscription_id"]),
        ("STATUS", lambda r: r["status"]),
        ("ATTEMPTS", lambda r: r["attempts"]),
    ]
    table(answer.get("deliveries", []), columns, out)


def _delivery(answer: Any, out: TextIO, err: TextIO) -> None:
    block(answer, _DELIVERY_KEYS, out)
    print("\nattempts:", file=out)
    table(answer.get("attempt_log", []), _ATTEMPT_COLUMNS, out)


def _done(answer: Any, out: TextIO, err: TextIO) -> None:
    print(answer.get("message", "done") if isinstance(answer, dict) else "done", file=out)


def _retried(answer: Any, out: TextIO, err: TextIO) -> None:
    print(f"delivery {answer['id']} queued again (status {answer['status']})", file=out)


VIEWS: dict[str, View] = {
    "retried": _retried,
    "subscriptions": _page(_SUBSCRIPTION_COLUMNS),
    "subscription": _one(_SUBSCRIPTION_KEYS),
    "secret": _one(("id", "secret", "previous_secret_expires_at")),
    "event": _one(_EVENT_KEYS),
    "event_detail": _event_detail,
    "deliveries": _page(_DELIVERY_COLUMNS),
    "delivery": _delivery,
    "event_types": _page(_EVENT_TYPE_COLUMNS),
    "event_type": _one(("name", "description", "schema", "created_at", "updated_at")),
    "done": _done,
}
