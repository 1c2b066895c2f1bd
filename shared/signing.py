"""Standard Webhooks signatures: `v1,<base64 HMAC-SHA256>` over `{id}.{timestamp}.{body}`."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets as _secrets

SECRET_PREFIX = "whsec_"
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64


def generate_secret(n_bytes: int = 32) -> str:
    """A new `whsec_` secret of `n_bytes` random bytes."""
    return SECRET_PREFIX + base64.b64encode(_secrets.token_bytes(n_bytes)).decode()


def secret_bytes(secret: str) -> bytes:
    """The key bytes of a `whsec_` secret; ValueError when it is not one of 24 to 64 bytes."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("a secret starts with whsec_")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except ValueError:
        raise ValueError("a secret is whsec_ followed by base64") from None
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise ValueError(
            f"a secret holds {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes, not {len(key)}"
        )
    return key


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,…` signature entry."""
    # hmac.digest is the one-shot C path: no HMAC object per signature (sender hot path).
    mac = hmac.digest(key, b"%s.%d.%s" % (msg_id.encode(), timestamp, body), hashlib.sha256)
    return "v1," + base64.b64encode(mac).decode()


def signature_header(keys: list[bytes], msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: one entry per live secret, space-separated."""
    return " ".join(sign(key, msg_id, timestamp, body) for key in keys)


def verify(key: bytes, msg_id: str, timestamp: int, body: bytes, header: str) -> bool:
    """True when any `v1` entry of `header` is the signature of this message under `key`."""
    expected = sign(key, msg_id, timestamp, body)
    return any(hmac.compare_digest(entry, expected) for entry in header.split(" ") if entry)
