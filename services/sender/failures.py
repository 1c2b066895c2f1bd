"""How many times in a row the handling of a delivery failed unexpectedly (a bug, a secret
that does not decrypt), so that one that always fails ends in the dead queue instead of
being nacked back forever."""

from __future__ import annotations

from collections import OrderedDict

FAILURE_LIMIT = 5
"""Unexpected failures of one delivery after which it is dead-lettered."""
_TRACKED = 10_000


class FailureCounts:
    """Failures per message key (the delivery id), in memory and bounded: the oldest keys
    are forgotten first. A restarted sender starts over, counting a redelivered message as
    failed once already, so a poison message still reaches the limit."""

    def __init__(self, limit: int = FAILURE_LIMIT, tracked: int = _TRACKED) -> None:
        self._limit = limit
        self._tracked = tracked
        self._counts: OrderedDict[str, int] = OrderedDict()

    def failed(self, key: str, *, redelivered: bool) -> bool:
        """Count one failure of `key`; True when it reached the limit (the key is dropped)."""
        count = self._counts.pop(key, 1 if redelivered else 0) + 1
        if count >= self._limit:
            return True
        self._counts[key] = count
        if len(self._counts) > self._tracked:
            self._counts.popitem(last=False)
        return False

    def succeeded(self, key: str) -> None:
        """`key` was handled: its earlier failures no longer count."""
        self._counts.pop(key, None)
