"""What makes an event acceptable, the same over AMQP and HTTP (CONTRACT section 2).

Each refusal is an `InvalidEvent` with a short `reason` (the `hookline_events_rejected_total`
label and the `x-hookline-reason` header), a message naming the failing field, and `errors`
listing every failing field (`type`, `data.amount`) for the API's 422.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import ValidationError

from shared.errors import InvalidEvent
from shared.event_types import Catalogue, data_errors
from shared.models import EventIn

REASON_TOO_LARGE = "too_large"
REASON_NOT_JSON = "not_json"
REASON_NOT_OBJECT = "not_object"
REASON_MISSING_TYPE = "missing_type"
REASON_INVALID_TYPE = "invalid_type"
REASON_INVALID_ENVELOPE = "invalid_envelope"
REASON_UNKNOWN_TYPE = "unknown_event_type"
REASON_SCHEMA = "schema_mismatch"


def field_errors(exc: ValidationError, prefix: str = "") -> list[dict[str, str]]:
    """Pydantic's errors as `{"field": "body.url", "message": ...}`, one per failing field."""
    found = []
    for error in exc.errors(include_url=False, include_input=False):
        field = ".".join([*(p for p in [prefix] if p), *(str(part) for part in error["loc"])])
        found.append({"field": field or prefix or "body", "message": error["msg"]})
    return found


def _summary(errors: list[dict[str, str]]) -> str:
    return "; ".join(f"{e['field']}: {e['message']}" for e in errors)


def envelope_from_dict(value: Any) -> EventIn:
    """The envelope of a decoded JSON value; raises InvalidEvent naming every bad field."""
    if not isinstance(value, dict):
        raise InvalidEvent(
            REASON_NOT_OBJECT, f"the body is a JSON {type(value).__name__}, not an object"
        )
    try:
        return EventIn.model_validate(value)
    except ValidationError as exc:
        errors = field_errors(exc)
        raise InvalidEvent(envelope_reason(exc), _summary(errors), errors=errors) from None


def envelope_reason(exc: ValidationError) -> str:
    """The rejection reason of `EventIn` refusing a value (the same over AMQP and HTTP)."""
    found = exc.errors()
    if any(e["loc"] == () and e["type"] == "model_type" for e in found):
        return REASON_NOT_OBJECT
    type_errors = [e for e in found if e["loc"][:1] == ("type",)]
    if any(e["type"] == "missing" for e in type_errors):
        return REASON_MISSING_TYPE
    if type_errors:
        return REASON_INVALID_TYPE
    return REASON_INVALID_ENVELOPE


def parse_event(body: bytes, max_payload: int) -> EventIn:
    """The envelope in a raw message body (size, JSON, envelope); raises InvalidEvent."""
    if len(body) > max_payload:
        raise InvalidEvent(
            REASON_TOO_LARGE, f"the body has {len(body)} bytes, more than the {max_payload} allowed"
        )
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(REASON_NOT_JSON, f"the body is not JSON: {exc}") from None
    return envelope_from_dict(value)


def check_catalogue(event: EventIn, catalogue: Catalogue, *, require_known: bool) -> None:
    """Refuse an event whose type is unknown (when required) or whose data fails its schema."""
    entry = catalogue.get(event.type)
    if entry is None:
        if require_known:
            message = f"the event type {event.type} is not in the catalogue"
            raise InvalidEvent(
                REASON_UNKNOWN_TYPE, message, errors=[{"field": "type", "message": message}]
            )
        return
    if entry.validator is None:
        return
    problems = data_errors(entry.validator, event.data)
    if problems:
        errors = [{"field": path, "message": message} for path, message in problems]
        raise InvalidEvent(REASON_SCHEMA, _summary(errors), errors=errors)
