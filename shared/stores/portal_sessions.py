"""Portal sessions: tenant-scoped tokens, stored as hashes, checked on every request.

No cache sits in front of `find_live`: a revoked or expired token must answer 401 on every
replica at once (CONTRACT section 3), and one indexed lookup per portal request is cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from shared.sql import queries
from shared.stores import connection

_PORTAL_SESSIONS_SQL = queries("portal_sessions").require("insert", "live", "revoke", "prune")


@dataclass(frozen=True, slots=True)
class PortalSession:
    id: str
    tenant_id: str
    expires_at: datetime


async def create(
    pool: asyncpg.Pool,
    session_id: str,
    token_hash: bytes,
    *,
    tenant_id: str,
    created_by: str,
    ttl_s: float,
) -> asyncpg.Record:
    """Store a session expiring `ttl_s` from now; its id, tenant, created_at and expires_at."""
    async with connection(pool) as conn:
        await conn.execute(_PORTAL_SESSIONS_SQL["prune"])
        row = await conn.fetchrow(
            _PORTAL_SESSIONS_SQL["insert"], session_id, token_hash, tenant_id, created_by, ttl_s
        )
    assert row is not None
    return row


async def find_live(pool: asyncpg.Pool, token_hash: bytes) -> PortalSession | None:
    """The session of a token hash, unless it is unknown, expired or revoked."""
    async with connection(pool) as conn:
        row = await conn.fetchrow(_PORTAL_SESSIONS_SQL["live"], token_hash)
    if row is None:
        return None
    return PortalSession(row["id"], row["tenant_id"], row["expires_at"])


async def revoke(pool: asyncpg.Pool, session_id: str) -> str | None:
    """Revoke a session (again is a no-op); its tenant, or None when there is no such id."""
    async with connection(pool) as conn:
        tenant: str | None = await conn.fetchval(_PORTAL_SESSIONS_SQL["revoke"], session_id)
        return tenant
