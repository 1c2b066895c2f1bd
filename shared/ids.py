"""Identifiers: time-ordered random ids (`evt_…`, `sub_…`) and derived delivery ids."""

from __future__ import annotations

import hashlib
import os
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case


_PAIRS = [high + low for high in _ALPHABET for low in _ALPHABET]
"""Two digits per 10 bits: half the Python steps of a digit at a time (ids are made for every
delivery, in fanout and in the sender)."""


def _base32(value: int, length: int) -> str:
    """The last `length` base32 digits of `value`, most significant first."""
    if length % 2 == 0:
        return "".join(
            [_PAIRS[(value >> shift) & 1023] for shift in range(5 * length - 10, -1, -10)]
        )
    chars = []
    for _ in range(length):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


_last = [0]
"""The last id's value: ids made in the same millisecond continue from it."""


def new_id(prefix: str) -> str:
    """`prefix_` + 26 chars: 48 bits of milliseconds then 80 random bits, so ids sort by time.

    Within one process ids are strictly increasing, also inside one millisecond (the random
    part then counts up from the previous id), so "oldest first" by id is creation order.
    """
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    if value <= _last[0]:
        value = _last[0] + 1
    _last[0] = value
    return f"{prefix}_{_base32(value, 26)}"


def delivery_id(event_id: str, subscription_id: str) -> str:
    """The one delivery id of an (event, subscription) pair, so a redelivered event maps to it."""
    digest = hashlib.sha256(f"{event_id}:{subscription_id}".encode()).digest()
    return f"dlv_{_base32(int.from_bytes(digest[:16], 'big'), 26)}"


def id_at(prefix: str, unix_s: float, *, random_part: bool = True) -> str:
    """An id as `new_id` would have made it at `unix_s`; the smallest such id without the
    random part (a partition bound: the SQL function `hookline_id_at` makes the same)."""
    low = int.from_bytes(os.urandom(10), "big") if random_part else 0
    return f"{prefix}_{_base32(int(unix_s * 1000) << 80 | low, 26)}"
