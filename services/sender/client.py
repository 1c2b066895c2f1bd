"""One HTTP attempt: the process's pool, the signed POST, and what came back (CONTRACT section 4).

Transport rules, each on purpose (`services.sender.transport` keeps them): one keep-alive
connection pool for the whole process; connections only to addresses the SSRF guard checked;
TLS verification always on; no proxy from the environment (it would bypass the guard);
`HOOKLINE_DELIVERY_TIMEOUT` from connect to the last byte read; redirects never followed; no
cookies kept (one receiver's cookie must never reach another subscription on its host);
response header lines and the body read capped, the body left compressed as sent.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from urllib.parse import urlsplit

from services.sender.classify import AttemptResult, ErrorKind
from services.sender.connection import ConnectionClosed, ProtocolError
from services.sender.transport import ConnectFailed, HttpPool
from shared.errors import TargetRefused
from shared.settings import Settings
from shared.signing import signature_header
from shared.subscriptions import SubscriptionTarget
from shared.targets import TargetPolicy
from shared.wire.messages import DeliveryMessage

MAX_HEADER_LINE_BYTES = 8190
MAX_HEADERS = 64


def _user_agent() -> str:
    try:
        return f"Hookline/{version('hookline')}"
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "Hookline/0"


USER_AGENT = _user_agent()
CONNECT_TIMEOUT_S = 10.0
KEEPALIVE_S = 30.0
# What the network or the receiver can make an attempt raise; anything else is a bug.
_ATTEMPT_ERRORS = (
    TimeoutError,
    TargetRefused,
    OSError,
    ValueError,
    ProtocolError,
    ConnectionClosed,
)


def create_pool(settings: Settings, ssl_context: ssl.SSLContext | None = None) -> HttpPool:
    """The one pool of a sender process; must be created inside the running loop."""
    return HttpPool(
        TargetPolicy.from_settings(settings),
        limit=settings.sender_concurrency,
        # A black-holed address must not eat the whole attempt budget before the answer.
        connect_timeout_s=min(CONNECT_TIMEOUT_S, settings.delivery_timeout),
        keepalive_s=KEEPALIVE_S,
        ssl_context=ssl_context,
        max_headers=MAX_HEADERS,
        max_line_bytes=MAX_HEADER_LINE_BYTES,
    )


def webhook_headers(msg: DeliveryMessage, sub: SubscriptionTarget, now: datetime) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt, signed with every live key of `sub`."""
    timestamp = int(now.timestamp())
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": msg.event_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(
            sub.live_keys(now), msg.event_id, timestamp, msg.body
        ),
    }


def _origin(url: str | None) -> str | None:
    """Scheme and host of a URL: enough to say where, without a path or query to leak."""
    if not url:
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}" if parts.netloc else None


def _error(exc: BaseException, timeout_s: float, url: str) -> tuple[ErrorKind, str]:
    """The kind and a message for a failed attempt; messages never carry the URL's path."""
    if isinstance(exc, TargetRefused):
        return ErrorKind.TARGET_REFUSED, f"target refused: {exc}"
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return ErrorKind.TLS, f"TLS failed: {exc}"
    if isinstance(exc, TimeoutError):
        return ErrorKind.TIMEOUT, f"no complete answer within {timeout_s:g}s"
    if isinstance(exc, ConnectFailed):
        return ErrorKind.CONNECTION, f"cannot connect to {exc.host}:{exc.port}: {exc.reason}"
    if isinstance(exc, ProtocolError):
        return ErrorKind.NETWORK, f"invalid answer: {exc}"
    if isinstance(exc, ValueError) and not isinstance(exc, UnicodeError):
        return ErrorKind.TARGET_REFUSED, f"target refused: {exc}"
    # Some errors quote the whole URL; its query may hold a receiver's token.
    text = str(exc).replace(url, _origin(url) or "the target")
    return ErrorKind.NETWORK, f"{type(exc).__name__}: {text}"


async def post(
    pool: HttpPool,
    url: str,
    headers: dict[str, str],
    body: bytes,
    *,
    body_cap: int,
    timeout_s: float,
) -> AttemptResult:
    """POST once; never raises for anything the network or the receiver does."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s):
            answer = await pool.post(pool.target(url), headers, body, body_cap=body_cap)
    except _ATTEMPT_ERRORS as exc:
        kind, message = _error(exc, timeout_s, url)
        return AttemptResult(
            duration_s=time.perf_counter() - started, error_kind=kind, error=message
        )
    return AttemptResult(
        duration_s=time.perf_counter() - started,
        status_code=answer.status,
        # Postgres text cannot hold NUL; one would fail the whole batch of the log.
        response_body=answer.body.decode("utf-8", errors="replace").replace("\x00", "\ufffd"),
        retry_after=answer.retry_after,
        location=_origin(answer.location),
    )
