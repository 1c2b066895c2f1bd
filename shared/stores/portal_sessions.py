"""Portal sessions: tenant-scoped tokens, stored as hashes, checked on every request.

No cache sits in front of `find_live`: a revoked or expired token must answer 401 on every
replica at once (CONTRACT section 3), and one indexed lookup per portal request is cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from shared.stores import connection

_INSERT = """
INSERT INTO portal_sessions (id, token_hash, tenant_id, created_by, expires_at)
VALUES ($1, $2, $3, $4, now() + $5::float8 * interval '1 second')
RETURNING id, tenant_id, created_at, expires_at
"""
# now() of the database, not of the replica, decides expiry: replicas whose clocks drift
# still agree on when a token stops working.
_LIVE = """
SELECT id, tenant_id, expires_at FROM portal_sessions
WHERE token_hash = $1 AND revoked_at IS NULL AND expires_at > now()
"""
# Sessions are kept a week past their end (for whoever reads the table after an incident),
# then removed whenever a new one is made, so the table stays small without a job of its own.
_PRUNE = "DELETE FROM portal_sessions WHERE expires_at < now() - interval '7 days'"
_REVOKE = """
UPDATE portal_sessions SET revoked_at = COALESCE(revoked_at, now())
WHERE id = $1 RETURNING tenant_id
"""


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
        await conn.execute(_PRUNE)
        row = await conn.fetchrow(_INSERT, session_id, token_hash, tenant_id, created_by, ttl_s)
    assert row is not None
    return row


async def find_live(pool: asyncpg.Pool, token_hash: bytes) -> PortalSession | None:
    """The session of a token hash, unless it is unknown, expired or revoked."""
    async with connection(pool) as conn:
        row = await conn.fetchrow(_LIVE, token_hash)
    if row is None:
        return None
    return PortalSession(row["id"], row["tenant_id"], row["expires_at"])


async def revoke(pool: asyncpg.Pool, session_id: str) -> str | None:
    """Revoke a session (again is a no-op); its tenant, or None when there is no such id."""
    async with connection(pool) as conn:
        tenant: str | None = await conn.fetchval(_REVOKE, session_id)
        return tenant
