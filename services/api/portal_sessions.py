"""`/v1/portal-sessions`: short-lived links that open the UI scoped to one tenant.

The token is shown once, in the answer to the create call, and its URL carries it in the
fragment (`/ui/#key=…`), which browsers never send to a server. Only its hash is stored.
Creating and revoking are logged with the tenant, the session id and the fingerprint of the
operator token that did it, never with the token.
"""

from __future__ import annotations

from datetime import datetime

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.api.auth import new_portal_token, token_hash
from services.api.routing import Call, Route, json_response
from shared.durations import parse_duration_s
from shared.errors import NotFound
from shared.ids import new_id
from shared.logging import get_logger
from shared.models import TENANT_ID_PATTERN
from shared.stores import portal_sessions as store

log = get_logger("api")

TAG = "portal"
DEFAULT_TTL = "1h"
MAX_TTL_S = 24 * 3600.0
MIN_TTL_S = 1.0


def _ttl_s(value: str) -> float:
    """Seconds of a `ttl`; ValueError (a 422 on `body.ttl`) outside 1s..24h."""
    seconds = parse_duration_s(value)
    if seconds < MIN_TTL_S:
        raise ValueError("at least 1s")
    if seconds > MAX_TTL_S:
        raise ValueError("at most 24h")
    return seconds


class PortalSessionCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"tenant_id": "acme", "ttl": "1h"}]}
    )

    tenant_id: str = Field(pattern=TENANT_ID_PATTERN, description="The tenant it may see.")
    ttl: str = Field(
        DEFAULT_TTL, max_length=32, description="How long it works: `15m`, `1h`, at most `24h`."
    )

    @field_validator("ttl")
    @classmethod
    def _valid_ttl(cls, value: str) -> str:
        _ttl_s(value)
        return value


class PortalSession(BaseModel):
    id: str = Field(description="`ps_…`: what `DELETE /v1/portal-sessions/{id}` revokes.")
    token: str = Field(description="A bearer token scoped to the tenant; shown only here.")
    url: str = Field(description="The UI signed in as this session: `<public URL>/ui/#key=…`.")
    tenant_id: str
    created_at: datetime
    expires_at: datetime


async def create_portal_session(call: Call) -> web.StreamResponse:
    body = call.body_as(PortalSessionCreate)
    session_id = new_id("ps")
    token = new_portal_token()
    row = await store.create(
        call.ctx.pool,
        session_id,
        token_hash(token.encode()),
        tenant_id=body.tenant_id,
        created_by=call.principal.fingerprint,
        ttl_s=_ttl_s(body.ttl),
    )
    log.info(
        "portal_session_created",
        session_id=session_id,
        tenant_id=body.tenant_id,
        operator=call.principal.fingerprint,
        expires_at=row["expires_at"].isoformat(),
    )
    answer = PortalSession(
        id=session_id,
        token=token,
        url=f"{call.ctx.settings.public_base_url}/ui/#key={token}",
        tenant_id=row["tenant_id"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
    )
    return json_response(answer, 201)


async def revoke_portal_session(call: Call) -> web.StreamResponse:
    session_id = call.path("id")
    tenant_id = await store.revoke(call.ctx.pool, session_id)
    if tenant_id is None:
        raise NotFound(f"no portal session {session_id}")
    log.info(
        "portal_session_revoked",
        session_id=session_id,
        tenant_id=tenant_id,
        operator=call.principal.fingerprint,
    )
    return web.Response(status=204)


class WhoAmI(BaseModel):
    kind: str = Field(description="`operator` (every tenant) or `portal` (one tenant).")
    tenant_id: str | None = Field(description="The tenant a portal token is scoped to.")
    expires_at: datetime | None = Field(description="When a portal token stops working.")


async def whoami(call: Call) -> web.StreamResponse:
    principal = call.principal
    kind = "operator" if principal.is_operator else "portal"
    return json_response(
        WhoAmI(kind=kind, tenant_id=principal.tenant_id, expires_at=principal.expires_at)
    )


ROUTES = [
    Route(
        "POST", "/v1/portal-sessions", create_portal_session,
        "Create a portal link scoped to one tenant (operator tokens only)", TAG, 201,
        PortalSession, body=PortalSessionCreate, operator_only=True,
    ),
    Route(
        "DELETE", "/v1/portal-sessions/{id}", revoke_portal_session,
        "Revoke a portal session: its token answers 401 from now on", TAG, 204,
        errors=(404,), operator_only=True,
    ),
    Route(
        "GET", "/v1/whoami", whoami, "Who the token is: an operator, or a tenant's portal",
        TAG, 200, WhoAmI,
    ),
]  # fmt: skip
