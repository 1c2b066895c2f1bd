"""The retry schedule: when attempt n+1 happens, which retry queue waits that long, `Retry-After`.

Attempts are numbered from 1. After attempt n fails, the delivery waits `delays[n-1]` in the
retry queue of that delay (`shared.topology.Topology.retry_queue`); attempt `len(delays) + 1`
is the last. A delay asked for by the receiver (`Retry-After`) or by the sender itself (a
deferral) is rounded up to the next delay that has a queue, and capped at the longest one:
only the delays of the schedule have queues, and a wait is never shorter than asked.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

DEFERRAL_PATIENCE_GROWTH_MAX = 20.0
"""The longest a repeatedly deferred delivery waits, in delivery timeouts (then rounded up to a
queue delay): 5 minutes with the default schedule and a 15 s timeout."""


@dataclass(frozen=True)
class RetrySchedule:
    """The delays of `HOOKLINE_RETRY_DELAYS`, in seconds, in schedule order."""

    delays_s: tuple[float, ...]
    queue_delays_s: tuple[float, ...] = field(init=False)
    """The distinct delays, ascending: one retry queue each."""

    def __post_init__(self) -> None:
        if not self.delays_s:
            raise ValueError("a retry schedule needs at least one delay")
        object.__setattr__(self, "queue_delays_s", tuple(sorted(set(self.delays_s))))

    @property
    def max_attempts(self) -> int:
        """Attempts in all: the first one plus one per delay."""
        return len(self.delays_s) + 1

    def is_last(self, attempt: int) -> bool:
        """True when no retry follows `attempt` (also for numbers past a shortened schedule)."""
        return attempt >= self.max_attempts

    def delay_after(self, attempt: int) -> float:
        """Seconds to wait after attempt `attempt` failed; ValueError after the last one."""
        if attempt < 1 or self.is_last(attempt):
            raise ValueError(f"no retry follows attempt {attempt} of {self.max_attempts}")
        return self.delays_s[attempt - 1]

    def queue_delay_at_least(self, wanted_s: float) -> float:
        """The shortest queued delay of at least `wanted_s`, or the longest when none is."""
        index = bisect.bisect_left(self.queue_delays_s, wanted_s)
        if index == len(self.queue_delays_s):
            return self.queue_delays_s[-1]
        return self.queue_delays_s[index]

    def queue_delay_at_most(self, wanted_s: float) -> float:
        """The longest queued delay of at most `wanted_s`, or the shortest when none is."""
        index = bisect.bisect_right(self.queue_delays_s, wanted_s)
        return self.queue_delays_s[max(index - 1, 0)]

    def deferral_delay(self, deferrals: int, patience_s: float) -> float:
        """How long a delivery deferred for the `deferrals`-th time in a row waits to come back.

        The first deferral waits the shortest delay; each further one the next longer delay,
        but never longer than the queue covering the patience for that deferral: the time a
        busy target needs at most to free a slot (the delivery timeout), doubled with each
        consecutive deferral up to `DEFERRAL_PATIENCE_GROWTH_MAX` times it. A target that keeps
        its slots full for many timeouts (a hanging receiver) thus has its backlog deferred for
        longer instead of cycling it through the broker every timeout; a target that had to
        wait once comes back after the shortest delay.
        """
        count = max(deferrals, 1)
        index = min(count, len(self.queue_delays_s)) - 1
        growth = min(2.0 ** min(count - 1, 32), DEFERRAL_PATIENCE_GROWTH_MAX)
        return min(self.queue_delays_s[index], self.queue_delay_at_least(patience_s * growth))


def park_length(stuck_s: float, patience_s: float) -> float:
    """How long to park a target whose slots have been full for `stuck_s` (see
    `services.sender.park`): one patience at first, doubling with each further patience it
    stays stuck, capped at `DEFERRAL_PATIENCE_GROWTH_MAX` patiences. A target that hung a few
    seconds is parked briefly; only one stuck for minutes is parked for minutes."""
    doublings = min(max(int(stuck_s // patience_s), 0), 32)
    return patience_s * min(2.0**doublings, DEFERRAL_PATIENCE_GROWTH_MAX)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds a `Retry-After` header asks to wait (RFC 9110: seconds or an HTTP-date).

    None when absent or unreadable; a date in the past gives 0.
    """
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now if now is not None else datetime.now(UTC)
    return max(0.0, (when - current).total_seconds())
