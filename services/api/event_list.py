"""`GET /v1/events`: the events, newest first, each with where its deliveries stand."""

from __future__ import annotations

from datetime import datetime

from aiohttp import web
from pydantic import BaseModel, Field

from services.api.events import Event
from services.api.problems import invalid
from services.api.routing import Call, Route, json_response
from services.api.schemas import NOT_NULL, PageQuery, decode_cursor, encode_cursor, page_of
from services.api.scope import named_tenant
from shared.models import EVENT_TYPE_PATTERN
from shared.stores import events as store


class DeliveryCounts(BaseModel):
    pending: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0


class ListedEvent(Event):
    delivery_counts: DeliveryCounts = Field(description="Its deliveries, by status.")


class EventPage(BaseModel):
    data: list[ListedEvent]
    next_cursor: str | None


class EventQuery(PageQuery):
    type: str | None = Field(
        None, pattern=EVENT_TYPE_PATTERN, description="Only events of this type.",
        json_schema_extra=NOT_NULL,
    )  # fmt: skip
    tenant_id: str | None = Field(None, max_length=128, json_schema_extra=NOT_NULL)


def _before(cursor: str | None) -> tuple[datetime, str] | None:
    position = decode_cursor(cursor, 2)
    if position is None:
        return None
    try:
        return datetime.fromisoformat(position[0]), position[1]
    except ValueError:
        raise invalid("query.cursor", "not a cursor this API returned") from None


async def list_events(call: Call) -> web.StreamResponse:
    query = call.query_as(EventQuery)
    rows, counts = await store.list_page(
        call.ctx.pool,
        event_type=query.type,
        tenant_id=named_tenant(call, query.tenant_id, "query.tenant_id"),
        before=_before(query.cursor),
        limit=query.limit + 1,
        tenant_scope=call.principal.tenant_id,
    )
    page, more = page_of(rows, query.limit)
    next_cursor = None
    if more:
        next_cursor = encode_cursor([page[-1]["created_at"].isoformat(), page[-1]["id"]])
    data = [
        ListedEvent.model_validate({**dict(r), "delivery_counts": counts.get(r["id"], {})})
        for r in page
    ]
    return json_response(EventPage(data=data, next_cursor=next_cursor))


ROUTES = [
    Route(
        "GET", "/v1/events", list_events, "List events, newest first", "events", 200,
        EventPage, query=EventQuery, errors=(403,),
    ),
]  # fmt: skip
