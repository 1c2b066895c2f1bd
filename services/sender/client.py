"""One HTTP attempt: the shared session, the signed POST, and what came back (CONTRACT section 4).

Transport rules, each on purpose: one keep-alive connection pool for the whole process;
connections only to addresses the SSRF guard checked (`shared.targets.guarded_connector`);
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

import aiohttp

from services.sender.classify import AttemptResult, ErrorKind
from shared.settings import Settings
from shared.signing import signature_header
from shared.subscriptions import SubscriptionTarget
from shared.targets import TargetPolicy, guarded_connector, refusal_in
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


def create_session(settings: Settings) -> aiohttp.ClientSession:
    """The one session of a sender process; must be created inside the running loop."""
    connector = guarded_connector(
        TargetPolicy.from_settings(settings),
        limit=settings.sender_concurrency,
        limit_per_host=0,
        keepalive_timeout=30,
        ssl=ssl.create_default_context(),
    )
    return aiohttp.ClientSession(
        connector=connector,
        # A black-holed address must not eat the whole attempt budget before the answer.
        timeout=aiohttp.ClientTimeout(
            total=settings.delivery_timeout,
            sock_connect=min(CONNECT_TIMEOUT_S, settings.delivery_timeout),
        ),
        trust_env=False,
        # A receiver's cookies are never stored, let alone sent to another subscription on
        # the same host; and no cookie bookkeeping per request.
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        max_line_size=MAX_HEADER_LINE_BYTES,
        max_field_size=MAX_HEADER_LINE_BYTES,
        max_headers=MAX_HEADERS,
        skip_auto_headers=("Accept-Encoding",),
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


async def _read_capped(content: aiohttp.StreamReader, cap: int) -> bytes:
    chunks: list[bytes] = []
    left = cap
    while left > 0:
        chunk = await content.read(left)
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _origin(url: str | None) -> str | None:
    """Scheme and host of a URL: enough to say where, without a path or query to leak."""
    if not url:
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}" if parts.netloc else None


def _error(exc: BaseException, timeout_s: float, url: str) -> tuple[ErrorKind, str]:
    """The kind and a message for a failed attempt; messages never carry the URL's path."""
    refusal = refusal_in(exc)
    if refusal is not None:
        return ErrorKind.TARGET_REFUSED, f"target refused: {refusal}"
    if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError):
        return ErrorKind.TLS, f"TLS failed: {exc}"
    if isinstance(exc, asyncio.TimeoutError):
        return ErrorKind.TIMEOUT, f"no complete answer within {timeout_s:g}s"
    if isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        return ErrorKind.TARGET_REFUSED, "target refused: the URL cannot be called"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return ErrorKind.CONNECTION, f"cannot connect to {exc.host}:{exc.port}: {exc.strerror}"
    if isinstance(exc, aiohttp.ClientResponseError):
        return ErrorKind.NETWORK, f"invalid answer: {exc.message}"
    # Some aiohttp errors quote the whole URL; its query may hold a receiver's token.
    text = str(exc).replace(url, _origin(url) or "the target")
    return ErrorKind.NETWORK, f"{type(exc).__name__}: {text}"


async def post(
    session: aiohttp.ClientSession,
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
        async with session.post(url, data=body, headers=headers, allow_redirects=False) as resp:
            excerpt = await _read_capped(resp.content, body_cap)
            return AttemptResult(
                duration_s=time.perf_counter() - started,
                status_code=resp.status,
                # Postgres text cannot hold NUL; one would fail the whole batch of the log.
                response_body=excerpt.decode("utf-8", errors="replace").replace("\x00", "\ufffd"),
                retry_after=resp.headers.get("Retry-After"),
                location=_origin(resp.headers.get("Location")),
            )
    except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
        kind, message = _error(exc, timeout_s, url)
        return AttemptResult(
            duration_s=time.perf_counter() - started, error_kind=kind, error=message
        )
