"""Routes as data: one `Route` per operation drives both the router and the OpenAPI document.

A route names its request body, query and response models; `register` parses and validates
the request with them before the handler runs (415, 413, 400, 422 come from here), so a
handler receives typed values and the document cannot drift from what is enforced.

Postgres text and jsonb cannot hold a NUL character (\\u0000), so none reaches a handler: one
in a body or query value is a 422 naming each field that holds it, one in a path id a 404
(no id holds one), rather than a 500 from the INSERT or SELECT it would reach.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from services.api.auth import PRINCIPAL, Principal
from services.api.context import CONTEXT, ApiContext
from services.api.problems import Problem
from services.ingest.validation import field_errors

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class Call:
    """One request, parsed: what a handler receives."""

    request: web.Request
    ctx: ApiContext
    body: BaseModel | None
    query: BaseModel | None

    def body_as(self, model: type[M]) -> M:
        assert isinstance(self.body, model)
        return self.body

    def query_as(self, model: type[M]) -> M:
        assert isinstance(self.query, model)
        return self.query

    def path(self, name: str) -> str:
        return self.request.match_info[name]

    @property
    def principal(self) -> Principal:
        """Who is calling (set by the auth middleware on every `/v1` request)."""
        return self.request[PRINCIPAL]


RouteHandler = Callable[[Call], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    """One operation of the API."""

    method: str
    path: str
    handler: RouteHandler
    summary: str
    tag: str
    status: int
    """The success status."""
    response: type[BaseModel] | None = None
    """The success body's model; None for no body (204)."""
    body: type[BaseModel] | None = None
    body_required: bool = True
    query: type[BaseModel] | None = None
    also: tuple[int, ...] = ()
    """Other success statuses answering the same model."""
    errors: tuple[int, ...] = ()
    """Problem statuses beyond those every /v1 operation and its body or path can give."""
    response_headers: dict[str, str] = field(default_factory=dict)
    """Header name -> description, on the success response."""
    links: tuple[str, ...] = ()
    """Operations whose path parameter is this response's `link_field` (OpenAPI links), so
    tools can chain create -> read -> change."""
    link_field: str = "id"
    operator_only: bool = False
    """Refused with 403 for a portal (tenant-scoped) token."""
    on_refused_body: Callable[[Problem], None] | None = None
    """Called with the problem (its `__cause__` pydantic's error, if any) when the request
    body is refused before the handler runs; e.g. to count rejected events."""

    @property
    def operation_id(self) -> str:
        return self.handler.__name__.strip("_")


def json_response(
    model: BaseModel, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """A JSON answer from a response model (by alias, so `schema` stays `schema`)."""
    return web.Response(
        body=model.model_dump_json(by_alias=True),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def _is_json(content_type: str) -> bool:
    return content_type == "application/json" or (
        content_type.startswith("application/") and content_type.endswith("+json")
    )


async def parse_body(
    request: web.Request, model: type[M], *, required: bool, limit: int
) -> M | None:
    """The request body validated by `model`; None when optional and absent."""
    if not request.body_exists:
        if required:
            raise Problem(
                422,
                "a JSON request body is required",
                errors=[{"field": "body", "message": "Field required"}],
            )
        return None
    if not _is_json(request.content_type):
        raise Problem(415, f"the body must be application/json, not {request.content_type}")
    if request.content_length is not None and request.content_length > limit:
        raise Problem(413, f"the body has {request.content_length} bytes, more than {limit}")
    raw = await request.read()
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Problem(400, f"the body is not valid JSON: {exc}") from None
    try:
        parsed = model.model_validate(value)
    except ValidationError as exc:
        errors = field_errors(exc, "body")
        # Chained so a route's `on_refused_body` can classify pydantic's errors.
        raise Problem(422, _summary(errors), errors=errors) from exc
    # After the model, so that fields it refuses anyway keep its own message (and events
    # their rejection reason); this catches the free-text fields no pattern guards.
    _refuse_nul(_nul_fields(value, "body"))
    return parsed


_NUL = "\x00"
_NUL_MESSAGE = "must not contain a NUL character (\\u0000)"


def _nul_fields(value: Any, root: str) -> list[str]:
    """Every field of a decoded JSON value holding a NUL in a string or a key, named as
    `field_errors` names them (`body.event_types.0`)."""
    found: list[str] = []
    stack: list[tuple[Any, str]] = [(value, root)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if _NUL in item:
                found.append(where)
        elif isinstance(item, dict):
            if any(_NUL in key for key in item):
                found.append(where)
            stack.extend((child, f"{where}.{key}") for key, child in item.items())
        elif isinstance(item, list):
            stack.extend((child, f"{where}.{i}") for i, child in enumerate(item))
    return sorted(found)


def _refuse_nul(fields: list[str]) -> None:
    if fields:
        errors = [{"field": f, "message": _NUL_MESSAGE} for f in fields]
        raise Problem(422, _summary(errors), errors=errors)


def parse_query(request: web.Request, model: type[M]) -> M:
    """The query string validated by `model` (each parameter once)."""
    values: dict[str, Any] = {}
    for key, value in request.query.items():
        if key in values:
            raise Problem(
                422,
                f"query.{key}: given more than once",
                errors=[{"field": f"query.{key}", "message": "given more than once"}],
            )
        values[key] = value
    _refuse_nul([f"query.{key}" for key, value in values.items() if _NUL in value])
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        errors = field_errors(exc, "query")
        raise Problem(422, _summary(errors), errors=errors) from None


def _summary(errors: list[dict[str, str]]) -> str:
    return "; ".join(f"{e['field']}: {e['message']}" for e in errors)


def _endpoint(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def endpoint(request: web.Request) -> web.StreamResponse:
        ctx = request.app[CONTEXT]
        if route.operator_only and not request[PRINCIPAL].is_operator:
            raise Problem(403, "a portal token cannot do this; it needs an operator token")
        if any(_NUL in part for part in request.match_info.values()):
            raise Problem(404, "there is nothing at this address")
        query = parse_query(request, route.query) if route.query is not None else None
        body = None
        if route.body is not None:
            try:
                body = await parse_body(
                    request,
                    route.body,
                    required=route.body_required,
                    limit=ctx.settings.max_payload,
                )
            except Problem as problem:
                if route.on_refused_body is not None:
                    route.on_refused_body(problem)
                raise
        return await route.handler(Call(request, ctx, body, query))

    endpoint.__name__ = route.operation_id
    return endpoint


def register(app: web.Application, routes: Sequence[Route]) -> None:
    for route in routes:
        app.router.add_route(route.method, route.path, _endpoint(route))
