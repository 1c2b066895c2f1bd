"""Bearer-token authentication of `/v1` (CONTRACT section 3, issues 5 and 13).

Decision: `GET /openapi.json` stays open. It is documentation, holds no data, and clients
generate code from it before they have a token. Health and metrics live on the ops port.

Two kinds of token: operator tokens (`HOOKLINE_API_TOKENS`), which see every tenant, and
portal tokens, which see one tenant and are looked up by their hash in Postgres on every
request (no cache: a revoked token answers 401 on every replica at once). The principal of a
request is kept under `PRINCIPAL` for the handlers.

An operator token is compared with every configured token in constant time, without an
early exit, so timing tells nothing about which tokens exist or how much of one matched. A
portal token is found by its SHA-256, which leaks nothing about the token through timing.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from aiohttp import web
from aiohttp.typedefs import Middleware

from services.api.problems import Handler, Problem
from shared.stores import portal_sessions

PROTECTED_PREFIX = "/v1/"
PORTAL_TOKEN_PREFIX = "hlp_"
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="hookline"'}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: an operator (tenant None, sees all) or one tenant's portal session."""

    tenant_id: str | None
    fingerprint: str
    """The operator token's fingerprint, or the portal session's id: safe to log."""
    expires_at: datetime | None = None

    @property
    def is_operator(self) -> bool:
        return self.tenant_id is None


PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("hookline_principal", Principal)


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


def fingerprint(token: bytes) -> str:
    """A short, stable, non-reversible name for a token, for logs (`sha256:` + 12 hex)."""
    return "sha256:" + hashlib.sha256(token).hexdigest()[:12]


def token_hash(token: bytes) -> bytes:
    """What is stored of a portal token: its SHA-256 (tokens are 256 random bits)."""
    return hashlib.sha256(token).digest()


def new_portal_token() -> str:
    return PORTAL_TOKEN_PREFIX + secrets.token_urlsafe(32)


async def _principal(
    presented: bytes, tokens: tuple[bytes, ...], pool: asyncpg.Pool
) -> Principal | None:
    if token_accepted(presented, tokens):
        return Principal(None, fingerprint(presented))
    if not presented.startswith(PORTAL_TOKEN_PREFIX.encode()):
        return None
    session = await portal_sessions.find_live(pool, token_hash(presented))
    if session is None:
        return None
    return Principal(session.tenant_id, session.id, session.expires_at)


def auth_middleware(tokens: tuple[bytes, ...], pool: asyncpg.Pool) -> Middleware:
    """A middleware refusing `/v1` requests without an operator token or a live portal token.

    With no operator tokens configured every `/v1` request gets a 503 saying the API is not
    set up (the service logs the same at start), rather than a 401 no token could ever fix.
    """

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(PROTECTED_PREFIX):
            if not tokens:
                raise Problem(
                    503, "the API is disabled: no API tokens are configured (HOOKLINE_API_TOKENS)"
                )
            presented = presented_token(request.headers.get("Authorization"))
            principal = None
            if presented is not None:
                principal = await _principal(presented, tokens, pool)
            if principal is None:
                raise Problem(
                    401,
                    "a valid bearer token is required (a portal link stops working when it"
                    " expires or is revoked)",
                    headers=_CHALLENGE,
                )
            request[PRINCIPAL] = principal
            response = await handler(request)
            # Answers hold secrets and portal tokens: no cache (a browser's included) may
            # keep one on disk or hand it to the next user of a shared machine.
            response.headers.setdefault("Cache-Control", "no-store")
            return response
        return await handler(request)

    return authenticate
