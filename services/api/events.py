"""`/v1/events`: publish an event over HTTP, read one back with its deliveries."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, Field, ValidationError

from services.api.problems import Problem
from services.api.routing import Call, Route, json_response
from services.api.scope import can_see
from services.ingest.validation import (
    REASON_NOT_JSON,
    REASON_TOO_LARGE,
    check_catalogue,
    envelope_reason,
)
from shared.errors import IdempotencyConflict, InvalidEvent, NotFound
from shared.logging import get_logger
from shared.metrics import EVENTS_REJECTED
from shared.models import EventIn
from shared.stores import events as store
from shared.stores import subscriptions as subscription_store
from shared.stores.events import StoredEvent

TAG = "events"

log = get_logger("api")


class Event(BaseModel):
    id: str = Field(description="`evt_…`: the `webhook-id` every delivery of it carries.")
    type: str
    data: dict[str, Any]
    tenant_id: str | None
    idempotency_key: str | None = Field(description="The `id` it was published with.")
    source: Literal["amqp", "http"]
    created_at: datetime
    dispatched_at: datetime | None


class DeliverySummary(BaseModel):
    id: str
    subscription_id: str
    status: Literal["pending", "succeeded", "failed", "cancelled"]
    attempts: int


class EventDetail(Event):
    deliveries: list[DeliverySummary]


def _event(stored: StoredEvent) -> Event:
    return Event.model_validate(stored, from_attributes=True)


async def publish_event(call: Call) -> web.StreamResponse:
    event = call.body_as(EventIn)
    settings = call.ctx.settings
    try:
        check_catalogue(event, call.ctx.catalogue, require_known=settings.require_event_types)
    except InvalidEvent as exc:
        EVENTS_REJECTED.labels(exc.reason).inc()
        log.info("event_rejected", event_type=event.type, reason=exc.reason, source="http")
        raise
    try:
        accepted = await call.ctx.intake.accept(event, "http")
    except IdempotencyConflict as exc:
        EVENTS_REJECTED.labels(exc.reason).inc()
        log.info("event_rejected", event_type=event.type, reason=exc.reason, source="http")
        raise
    return json_response(_event(accepted.event), 200 if accepted.duplicate else 202)


_STATUS_REASONS = {413: REASON_TOO_LARGE}
"""Reasons of bodies refused before pydantic saw them; the rest (400, 415, none) are not JSON."""


def _count_refused_body(problem: Problem) -> None:
    """Count an event refused with its body, under the reason the AMQP path gives it."""
    cause = problem.__cause__
    if isinstance(cause, ValidationError):
        reason = envelope_reason(cause)
    else:
        reason = _STATUS_REASONS.get(problem.status, REASON_NOT_JSON)
    EVENTS_REJECTED.labels(reason).inc()
    log.info("event_rejected", reason=reason, status=problem.status, source="http")


async def get_event(call: Call) -> web.StreamResponse:
    event_id = call.path("id")
    found = await store.get(call.ctx.pool, event_id)
    if found is None:
        raise NotFound(f"no event {event_id}")
    stored, deliveries = found
    if not can_see(call, stored.tenant_id):
        raise NotFound(f"no event {event_id}")
    if not call.principal.is_operator and deliveries:
        # Only deliveries to its own subscriptions (one moved to another tenant left).
        tenants = await subscription_store.tenants_by_id(
            call.ctx.pool, [d["subscription_id"] for d in deliveries]
        )
        deliveries = [d for d in deliveries if can_see(call, tenants.get(d["subscription_id"]))]
    detail = EventDetail.model_validate(
        {
            **_event(stored).model_dump(),
            "deliveries": [dict(d) for d in deliveries],
        }
    )
    return json_response(detail)


ROUTES = [
    Route(
        "POST", "/v1/events", publish_event,
        "Publish an event: 202 when new, 200 with the first event for a known `id` of the"
        " same tenant within the idempotency window, 409 when that key stood for another"
        " type or data",
        TAG, 202, Event, body=EventIn, also=(200,), errors=(409,), links=("get_event",),
        on_refused_body=_count_refused_body, operator_only=True,
    ),
    Route(
        "GET", "/v1/events/{id}", get_event, "Get an event and a summary of its deliveries",
        TAG, 200, EventDetail, errors=(404,),
    ),
]  # fmt: skip
