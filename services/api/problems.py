"""RFC 9457 problem details: every error the API answers is made here, and only here.

Handlers raise `Problem` (or a `HooklineError` the middleware knows); aiohttp's own errors
(unknown route, wrong method, body too large) pass through the same middleware, so no
request can see anything but `application/problem+json` on failure, and never a traceback.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

import orjson
from aiohttp import web

from shared.errors import (
    BrokerUnavailable,
    Conflict,
    HooklineError,
    InvalidEvent,
    NotFound,
    StorageUnavailable,
)
from shared.logging import get_logger
from shared.metrics import API_REQUEST_DURATION, HTTP_REQUESTS

PROBLEM_CONTENT_TYPE = "application/problem+json"

_SLUGS = {
    400: "malformed-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    413: "payload-too-large",
    415: "unsupported-media-type",
    422: "validation-failed",
    500: "internal-error",
    503: "service-unavailable",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

log = get_logger("api")


class Problem(HooklineError):
    """An error answer: raise it from a handler; the middleware renders it."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}


def invalid(field: str, message: str) -> Problem:
    """A 422 naming one field."""
    return Problem(422, f"{field}: {message}", errors=[{"field": field, "message": message}])


def problem_response(problem: Problem) -> web.Response:
    body: dict[str, Any] = {
        "type": f"urn:hookline:problem:{_SLUGS.get(problem.status, 'error')}",
        "title": HTTPStatus(problem.status).phrase,
        "status": problem.status,
        "detail": problem.detail,
    }
    if problem.errors is not None:
        body["errors"] = problem.errors
    return web.Response(
        body=orjson.dumps(body),
        status=problem.status,
        content_type=PROBLEM_CONTENT_TYPE,
        headers=problem.headers,
    )


def _from_http_exception(exc: web.HTTPException) -> Problem:
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        return Problem(
            405, f"{exc.method} is not allowed here; use {allowed}", headers={"Allow": allowed}
        )
    if isinstance(exc, web.HTTPNotFound):
        return Problem(404, "there is nothing at this address")
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return Problem(413, "the request body is larger than this API accepts")
    return Problem(exc.status, exc.reason)


def _translate(exc: Exception) -> Problem:
    """The problem for an exception escaping a handler."""
    if isinstance(exc, Problem):
        return exc
    if isinstance(exc, web.HTTPException):
        return _from_http_exception(exc)
    if isinstance(exc, InvalidEvent):
        errors = [{"field": f"body.{e['field']}", "message": e["message"]} for e in exc.errors]
        return Problem(422, exc.message, errors=errors)
    if isinstance(exc, NotFound):
        return Problem(404, str(exc))
    if isinstance(exc, Conflict):
        return Problem(409, str(exc))
    if isinstance(exc, StorageUnavailable | BrokerUnavailable):
        log.warning("api_dependency_unavailable", error=str(exc))
        return Problem(
            503, "a backing service is unavailable; try again shortly", headers={"Retry-After": "1"}
        )
    log.error("api_request_failed", error=type(exc).__name__, exc_info=exc)
    return Problem(500, "the request failed unexpectedly; it was logged")


def _route_name(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def problems_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render every error as problem details, and count requests by route and status."""
    started = time.perf_counter()
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = problem_response(_translate(exc))
    except Exception as exc:
        response = problem_response(_translate(exc))
    route = _route_name(request)
    HTTP_REQUESTS.labels(route, str(response.status)).inc()
    API_REQUEST_DURATION.labels(route).observe(time.perf_counter() - started)
    return response
