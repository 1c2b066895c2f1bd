"""`/v1/event-types`: the catalogue; a type's optional JSON Schema checks its events' data.

A schema is compiled when it is written, so an invalid one is a 422 here rather than a
surprise at ingest; the in-process catalogue is updated before the call answers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.api.routing import Call, Route, json_response
from services.api.schemas import NOT_NULL, PageQuery, decode_cursor, encode_cursor, page_of
from shared.errors import NotFound
from shared.event_types import EventType as CatalogueEntry
from shared.event_types import compile_schema, schema_error
from shared.logging import get_logger
from shared.models import EVENT_TYPE_PATTERN, nul_path
from shared.stores import event_types as store

log = get_logger("api")

TAG = "event-types"
DESCRIPTION_MAX = 1024
_SCHEMA_DOC = "A JSON Schema (2020-12 unless it names its `$schema`) that `data` must match."


def _valid_schema(schema: dict[str, Any] | None) -> dict[str, Any] | None:
    if schema is not None:
        # Postgres jsonb cannot hold a NUL character: a 422 here rather than a 500 at INSERT.
        where = nul_path(schema, "schema")
        if where is not None:
            raise ValueError(f"must not contain a NUL character (\\u0000), found at {where}")
        error = schema_error(schema)
        if error is not None:
            raise ValueError(f"not a valid JSON Schema: {error}")
    return schema


class EventTypeCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(pattern=EVENT_TYPE_PATTERN, description="`noun.verb` or `ns.noun.verb`.")
    description: str = Field("", max_length=DESCRIPTION_MAX)
    schema_: dict[str, Any] | None = Field(None, alias="schema", description=_SCHEMA_DOC)

    _schema = field_validator("schema_")(_valid_schema)


class EventTypePatch(BaseModel):
    """Only the fields given change; `schema: null` removes the schema."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    description: str | None = Field(None, max_length=DESCRIPTION_MAX, json_schema_extra=NOT_NULL)
    schema_: dict[str, Any] | None = Field(None, alias="schema", description=_SCHEMA_DOC)

    @field_validator("description", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("may be left out, but not null")
        return value

    _schema = field_validator("schema_")(_valid_schema)


class EventType(BaseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    name: str
    description: str
    schema_: dict[str, Any] | None = Field(alias="schema")
    created_at: datetime
    updated_at: datetime


class EventTypePage(BaseModel):
    data: list[EventType]
    next_cursor: str | None


def _out(row: asyncpg.Record) -> EventType:
    return EventType.model_validate(dict(row))


def _remember(call: Call, row: asyncpg.Record) -> None:
    schema = row["schema"]
    entry = CatalogueEntry(
        name=row["name"],
        description=row["description"],
        schema=schema,
        validator=compile_schema(schema) if isinstance(schema, dict) else None,
    )
    call.ctx.catalogue.apply(row["name"], entry)


def _not_found(name: str) -> NotFound:
    return NotFound(f"no event type {name}")


async def create_event_type(call: Call) -> web.StreamResponse:
    body = call.body_as(EventTypeCreate)
    row = await store.create(call.ctx.pool, body.name, body.description, body.schema_)
    _remember(call, row)
    log.info("event_type_created", event_type=body.name, has_schema=body.schema_ is not None)
    location = f"/v1/event-types/{body.name}"
    return json_response(_out(row), 201, headers={"Location": location})


async def list_event_types(call: Call) -> web.StreamResponse:
    query = call.query_as(PageQuery)
    cursor = decode_cursor(query.cursor, 1)
    rows = await store.list_page(call.ctx.pool, cursor[0] if cursor else None, query.limit + 1)
    page, more = page_of(rows, query.limit)
    next_cursor = encode_cursor([page[-1]["name"]]) if more else None
    return json_response(EventTypePage(data=[_out(r) for r in page], next_cursor=next_cursor))


async def get_event_type(call: Call) -> web.StreamResponse:
    name = call.path("name")
    row = await store.get(call.ctx.pool, name)
    if row is None:
        raise _not_found(name)
    return json_response(_out(row))


async def update_event_type(call: Call) -> web.StreamResponse:
    name = call.path("name")
    body = call.body_as(EventTypePatch)
    fields = {"description": "description", "schema_": "schema"}
    changes = {fields[f]: getattr(body, f) for f in body.model_fields_set}
    row = await store.update(call.ctx.pool, name, changes)
    if row is None:
        raise _not_found(name)
    _remember(call, row)
    log.info("event_type_updated", event_type=name, fields=sorted(changes))
    return json_response(_out(row))


async def delete_event_type(call: Call) -> web.StreamResponse:
    name = call.path("name")
    if not await store.delete(call.ctx.pool, name):
        raise _not_found(name)
    call.ctx.catalogue.apply(name, None)
    log.info("event_type_deleted", event_type=name)
    return web.Response(status=204)


ROUTES = [
    Route(
        "POST", "/v1/event-types", create_event_type, "Add an event type", TAG, 201, EventType,
        body=EventTypeCreate, errors=(409,), operator_only=True,
        response_headers={"Location": "The new event type's address."},
        links=("get_event_type", "update_event_type", "delete_event_type"), link_field="name",
    ),
    Route(
        "GET", "/v1/event-types", list_event_types, "List the catalogue", TAG, 200,
        EventTypePage, query=PageQuery,
    ),
    Route(
        "GET", "/v1/event-types/{name}", get_event_type, "Get an event type", TAG, 200,
        EventType, errors=(404,),
    ),
    Route(
        "PATCH", "/v1/event-types/{name}", update_event_type,
        "Change an event type's description or schema", TAG, 200, EventType,
        body=EventTypePatch, errors=(404,), operator_only=True,
    ),
    Route(
        "DELETE", "/v1/event-types/{name}", delete_event_type, "Remove an event type", TAG,
        204, errors=(404,), operator_only=True,
    ),
]  # fmt: skip
