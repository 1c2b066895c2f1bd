"""Pure arithmetic on what the receiver saw: percentiles, loss, duplicates, rates."""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass

Receipt = tuple[int, int, str, float, float]
"""(subscription index, event seq, webhook-id, sent_at, received_at), times in Unix seconds."""


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) by linear interpolation; None for no values.

    `sorted_values` must already be sorted ascending.
    """
    if not sorted_values:
        return None
    if not 0 <= q <= 100:
        raise ValueError("a percentile is between 0 and 100")
    rank = (len(sorted_values) - 1) * q / 100
    low = math.floor(rank)
    high = math.ceil(rank)
    fraction = rank - low
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * fraction


def rate_per_s(count: int, start: float | None, end: float | None) -> float | None:
    """`count` over the span from `start` to `end`; None when the span is empty."""
    if start is None or end is None or end <= start or count <= 0:
        return None
    return count / (end - start)


@dataclass(frozen=True)
class DeliveryStats:
    """What a user of the receiver would check: everything arrived, once, and how fast."""

    expected: int
    received: int
    """Every successful receipt of an expected (subscription, event), duplicates included."""
    lost: int
    duplicated: int
    """Receipts beyond the first of one (subscription, event) pair."""
    unexpected: int
    """Receipts for a subscription or event outside the expected set."""
    first_at: float | None
    last_at: float | None
    deliveries_per_s: float | None
    """Distinct deliveries over the span from the first to the last receipt."""
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None


def analyse(receipts: Iterable[Receipt], subs: Iterable[int], seqs: range) -> DeliveryStats:
    """Compare receipts with the expected set: every event seq in `seqs` times every sub in `subs`.

    Latency is publish to the first receipt of each pair; later copies count as duplicates.
    """
    wanted_subs = frozenset(subs)
    return _analyse(
        receipts, lambda sub, seq: sub in wanted_subs and seq in seqs, len(wanted_subs) * len(seqs)
    )


def analyse_pairs(receipts: Iterable[Receipt], sub_of_seq: Sequence[int]) -> DeliveryStats:
    """As `analyse`, when event `seq` goes to subscription `sub_of_seq[seq]` only."""
    count = len(sub_of_seq)
    return _analyse(receipts, lambda sub, seq: 0 <= seq < count and sub_of_seq[seq] == sub, count)


def _analyse(
    receipts: Iterable[Receipt], wanted: Callable[[int, int], bool], expected: int
) -> DeliveryStats:
    return _tally(
        (
            ((sub, seq) if wanted(sub, seq) else None, sent_at, received_at)
            for sub, seq, _webhook_id, sent_at, received_at in receipts
        ),
        expected,
    )


def _tally(matched: Iterable[tuple[Hashable | None, float, float]], expected: int) -> DeliveryStats:
    """Stats of (key, since, received_at) receipts: a None key is unexpected, a key seen
    again a duplicate; latency is `since` to the first receipt of each key."""
    first_seen: dict[Hashable, float] = {}
    latencies_ms: list[float] = []
    received = unexpected = 0
    for key, since, received_at in matched:
        if key is None:
            unexpected += 1
            continue
        received += 1
        if key in first_seen:
            continue
        first_seen[key] = received_at
        latencies_ms.append((received_at - since) * 1000)
    latencies_ms.sort()
    times = first_seen.values()
    first_at = min(times, default=None)
    last_at = max(times, default=None)
    return DeliveryStats(
        expected=expected,
        received=received,
        lost=expected - len(first_seen),
        duplicated=received - len(first_seen),
        unexpected=unexpected,
        first_at=first_at,
        last_at=last_at,
        deliveries_per_s=rate_per_s(len(first_seen), first_at, last_at),
        p50_ms=percentile(latencies_ms, 50),
        p95_ms=percentile(latencies_ms, 95),
        p99_ms=percentile(latencies_ms, 99),
        max_ms=latencies_ms[-1] if latencies_ms else None,
    )


def ratio(value: float | None, reference: float | None) -> float | None:
    """value / reference, or None when either is missing or the reference is zero."""
    if value is None or not reference:
        return None
    return value / reference


def analyse_ids(receipts: Iterable[Receipt], accepted_at: dict[str, float]) -> DeliveryStats:
    """Compare receipts with the events Hookline accepted, by `webhook-id` (the event id).

    For a load whose sequence numbers are not a range (wrk's threads number their own):
    `accepted_at` maps each stored event's id to when it was stored (Unix seconds); latency
    is stored to first receipt. One subscription: a receipt of an unknown id is unexpected.
    """
    return _tally(
        (
            (
                webhook_id if webhook_id in accepted_at else None,
                accepted_at.get(webhook_id, 0.0),
                received_at,
            )
            for _sub, _seq, webhook_id, _sent_at, received_at in receipts
        ),
        len(accepted_at),
    )
