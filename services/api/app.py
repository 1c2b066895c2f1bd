"""The aiohttp application of the API: middlewares, the routes of every resource, OpenAPI."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import orjson
from aiohttp import web

from services.api import (
    deliveries,
    event_list,
    event_types,
    events,
    portal_sessions,
    subscriptions,
    test_events,
)
from services.api.auth import auth_middleware
from services.api.context import CONTEXT, ApiContext
from services.api.openapi import build_document
from services.api.problems import problems_middleware
from services.api.routing import Route, register
from services.api.ui import add_ui_routes
from shared.logging import get_logger
from shared.ops import start_site

ROUTES: list[Route] = [
    *subscriptions.ROUTES,
    *test_events.ROUTES,
    *deliveries.ROUTES,
    *event_list.ROUTES,
    *events.ROUTES,
    *event_types.ROUTES,
    *portal_sessions.ROUTES,
]

log = get_logger("api")


def hookline_version() -> str:
    try:
        return version("hookline")
    except PackageNotFoundError:  # pragma: no cover - running from a plain checkout
        return "0.0.0"


def openapi_document() -> dict[str, object]:
    return build_document(ROUTES, hookline_version())


def build_app(ctx: ApiContext) -> web.Application:
    """The API application; `ctx` gives handlers the pool, the publisher and the settings."""
    app = web.Application(
        middlewares=[problems_middleware, auth_middleware(ctx.settings.token_values, ctx.pool)],
        client_max_size=ctx.settings.max_payload,
    )
    app[CONTEXT] = ctx
    register(app, ROUTES)
    document = orjson.dumps(openapi_document())

    async def openapi(_: web.Request) -> web.Response:
        return web.Response(body=document, content_type="application/json")

    app.router.add_get("/openapi.json", openapi)
    add_ui_routes(app, ctx.settings.ui_frame_ancestors)
    return app


async def start_api(ctx: ApiContext) -> web.AppRunner:
    """Serve the API on `HOOKLINE_API_HOST:HOOKLINE_API_PORT` until the runner is cleaned up."""
    settings = ctx.settings
    if not settings.api_tokens:
        log.warning(
            "api_tokens_missing",
            detail="HOOKLINE_API_TOKENS is empty: every /v1 request is refused with 503",
        )
    runner = await start_site(
        build_app(ctx), settings.api_host, settings.api_port, reuse_port=settings.api_reuse_port
    )
    log.info(
        "api_started",
        host=settings.api_host,
        port=settings.api_port,
        ui=settings.public_base_url + "/ui/",
    )
    return runner
