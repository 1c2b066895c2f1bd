"""Models and helpers every resource shares: problems, pagination, cursors."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from services.api.problems import invalid

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


def _drop_null(schema: dict[str, Any]) -> None:
    """Document an optional field as its type alone: null is not a value it accepts."""
    options = schema.pop("anyOf", None)
    if options is None:
        return
    kept = [o for o in options if o.get("type") != "null"]
    if len(kept) == 1:
        schema.update(kept[0])
    else:
        schema["anyOf"] = kept
    schema.pop("default", None)


NOT_NULL: Any = _drop_null
"""`json_schema_extra` for optional fields that must not be sent as null."""


class FieldError(BaseModel):
    field: str = Field(description="Where: `body.url`, `body.data.amount`, `query.limit`.")
    message: str


class ProblemDetails(BaseModel):
    """An error (RFC 9457)."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = Field(None, description="Every invalid field (on a 422).")


class PageQuery(BaseModel):
    """`?limit=&cursor=` of every list."""

    model_config = ConfigDict(extra="ignore")

    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="Items per page.")
    cursor: str | None = Field(
        None,
        max_length=512,
        description="`next_cursor` of the previous page; omit for the first page.",
        json_schema_extra=NOT_NULL,
    )


def encode_cursor(position: list[Any]) -> str:
    """An opaque cursor for the item after `position` (JSON-able values)."""
    return base64.urlsafe_b64encode(orjson.dumps(position)).decode().rstrip("=")


def decode_cursor(cursor: str | None, size: int) -> list[Any] | None:
    """The position in a cursor made by `encode_cursor`; a 422 on `query.cursor` otherwise."""
    if cursor is None:
        return None
    try:
        value = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError):
        value = None
    if (
        not isinstance(value, list)
        or len(value) != size
        # No id or time holds a NUL, and Postgres text cannot: refused here, not at the query.
        or not all(isinstance(v, str) and "\x00" not in v for v in value)
    ):
        raise invalid("query.cursor", "not a cursor this API returned")
    return value


def page_of(rows: list[Any], limit: int) -> tuple[list[Any], bool]:
    """The first `limit` of `rows` (fetched `limit + 1`), and whether more follow."""
    return rows[:limit], len(rows) > limit
