"""Which subscriptions an event goes to: type patterns and the tenant rule (CONTRACT section 3)."""

from __future__ import annotations

import re

PATTERN_RE = re.compile(
    r"^(\*|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*){0,3}\.\*|"
    r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*){1,3})$"
)


def is_valid_pattern(pattern: str) -> bool:
    """`invoice.paid`, `invoice.*` (any type under `invoice.`) or `*`."""
    return PATTERN_RE.match(pattern) is not None


def type_matches(pattern: str, event_type: str) -> bool:
    """Whether one subscription pattern covers an event type."""
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return event_type.startswith(pattern[:-1])
    return pattern == event_type


def candidate_keys(event_type: str) -> list[str]:
    """Every pattern that could match `event_type`: itself, each prefix wildcard, and `*`.

    An index keyed by pattern then finds the matching subscriptions in a few dict lookups,
    however many subscriptions there are.
    """
    parts = event_type.split(".")
    keys = [event_type, "*"]
    keys.extend(".".join(parts[:i]) + ".*" for i in range(1, len(parts)))
    return keys
