"""Bearer-token authentication of `/v1` (CONTRACT section 3, issue 5).

Decision: `GET /openapi.json` stays open. It is documentation, holds no data, and clients
generate code from it before they have a token. Health and metrics live on the ops port.

The presented token is compared with every configured token in constant time, without an
early exit, so timing tells nothing about which tokens exist or how much of one matched.
"""

from __future__ import annotations

import hmac

from aiohttp import web
from aiohttp.typedefs import Middleware

from services.ingest.api.problems import Handler, Problem

PROTECTED_PREFIX = "/v1/"
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="hookline"'}


def token_accepted(presented: bytes, tokens: tuple[bytes, ...]) -> bool:
    """Whether `presented` equals one of `tokens`, looking at every one of them."""
    accepted = False
    for token in tokens:
        accepted |= hmac.compare_digest(presented, token)
    return accepted


def presented_token(header: str | None) -> bytes | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token.encode()


def auth_middleware(tokens: tuple[bytes, ...]) -> Middleware:
    """A middleware refusing `/v1` requests without one of `tokens`.

    With no tokens configured every `/v1` request gets a 503 saying the API is not set up
    (the service logs the same at start), rather than a 401 no token could ever fix.
    """

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(PROTECTED_PREFIX):
            if not tokens:
                raise Problem(
                    503, "the API is disabled: no API tokens are configured (HOOKLINE_API_TOKENS)"
                )
            presented = presented_token(request.headers.get("Authorization"))
            if presented is None or not token_accepted(presented, tokens):
                raise Problem(401, "a valid bearer token is required", headers=_CHALLENGE)
        return await handler(request)

    return authenticate
