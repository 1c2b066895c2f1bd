"""What one fault did to deliveries: counts, recovery times and the verdict (pure arithmetic)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from bench.stats import Receipt

MAX_DUPLICATE_RATIO = 0.01
"""Duplicates above 1% of deliveries fail a fault: at-least-once, but not carelessly so."""
MAX_RECOVERY_S = 30.0
"""Either recovery time above this fails a fault."""


@dataclass
class FaultOutcome:
    """The figures of one fault, as printed in the table and written to the JSON."""

    fault: str
    confirmed: int
    """Events the broker or the API confirmed (those Hookline promised to deliver)."""
    expected: int
    """confirmed x subscriptions."""
    delivered: int
    """Distinct (subscription, event) pairs of confirmed events the receiver got."""
    lost: int
    duplicated: int
    """Receipts beyond the first of one (subscription, event) pair, confirmed or not."""
    first_after_s: float | None
    """From the end of the fault to the first delivery of an event published after it."""
    backlog_s: float | None
    """From the end of the fault to the last first delivery of an event published before it;
    None when one of those was lost."""
    longest_gap_s: float | None = None
    """The longest time without any delivery from the start of the fault until the first
    delivery after its end: what the fault cost while it lasted (no threshold)."""
    confirmed_after: int = 0
    """Confirmed events sent after the fault ended: the ones that show it recovered."""
    unconfirmed_delivered: int = 0
    """Events never confirmed that were delivered anyway (a confirm lost on the way)."""
    bad_signatures: int = 0
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


def _first_receipts(receipts: Iterable[Receipt]) -> tuple[dict[tuple[int, int], float], int]:
    """The first receipt time of each (sub, seq), and how many receipts came after a first."""
    first: dict[tuple[int, int], float] = {}
    extra = 0
    for sub, seq, _webhook_id, _sent_at, received_at in receipts:
        key = (sub, seq)
        if key in first:
            extra += 1
            first[key] = min(first[key], received_at)
        else:
            first[key] = received_at
    return first, extra


def _longest_gap(receipts: list[Receipt], start: float | None, end: float) -> float | None:
    if start is None:
        return None
    times = sorted(r[4] for r in receipts if r[4] >= start)
    until = next((at for at in times if at >= end), None)
    if until is None:
        return None
    points = [start, *(at for at in times if at < until), until]
    return max(b - a for a, b in itertools.pairwise(points))


def assess(
    fault: str,
    receipts: list[Receipt],
    confirmed: Mapping[int, float],
    subs: range,
    fault_end: float,
    bad_signatures: int = 0,
    fault_start: float | None = None,
) -> FaultOutcome:
    """Compare receipts with the confirmed events; `fault_start` and `fault_end` are Unix time.

    `confirmed` maps each confirmed event's seq to when it was sent.
    """
    first, duplicated = _first_receipts(receipts)
    delivered = [(key, at) for key, at in first.items() if key[1] in confirmed]
    expected = len(confirmed) * len(subs)
    after = [at for (_, seq), at in delivered if confirmed[seq] >= fault_end]
    before = [at for (_, seq), at in delivered if confirmed[seq] < fault_end]
    confirmed_after = sum(1 for at in confirmed.values() if at >= fault_end)
    lost_before = (len(confirmed) - confirmed_after) * len(subs) - len(before)
    lost_after = confirmed_after * len(subs) - len(after)
    outcome = FaultOutcome(
        fault=fault,
        confirmed=len(confirmed),
        expected=expected,
        delivered=len(delivered),
        lost=expected - len(delivered),
        duplicated=duplicated,
        first_after_s=max(0.0, min(after) - fault_end) if after else None,
        backlog_s=max(0.0, max(before) - fault_end) if before and not lost_before else None,
        longest_gap_s=_longest_gap(receipts, fault_start, fault_end),
        confirmed_after=confirmed_after,
        unconfirmed_delivered=len({seq for _, seq in first} - set(confirmed)),
        bad_signatures=bad_signatures,
    )
    if outcome.lost:
        outcome.notes.append(
            f"lost: {lost_before} deliveries of events sent before the fault ended,"
            f" {lost_after} of events sent after"
        )
    outcome.failures = verdict(outcome)
    return outcome


def verdict(outcome: FaultOutcome) -> list[str]:
    """Why the fault fails the suite; empty when it passes."""
    failures = []
    if outcome.confirmed_after == 0:
        failures.append("no event sent after the fault was confirmed")
    if outcome.lost:
        failures.append(f"{outcome.lost} of {outcome.expected} deliveries lost")
    if outcome.duplicated > MAX_DUPLICATE_RATIO * max(outcome.delivered, 1):
        failures.append(f"{outcome.duplicated} duplicates (over 1% of deliveries)")
    if outcome.bad_signatures:
        failures.append(f"{outcome.bad_signatures} webhooks with a missing or wrong signature")
    for label, value in (("first", outcome.first_after_s), ("backlog", outcome.backlog_s)):
        if value is None:
            failures.append(f"no {label} recovery time: it never recovered")
        elif value > MAX_RECOVERY_S:
            failures.append(f"{label} recovery took {value:.1f}s (over {MAX_RECOVERY_S:.0f}s)")
    return failures
