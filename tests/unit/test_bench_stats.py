"""The bench's arithmetic: percentiles, loss and duplicate counting, rates."""

from __future__ import annotations

import pytest

from bench.stats import Receipt, analyse, analyse_pairs, percentile, rate_per_s, ratio


def test_percentile_interpolates_between_ranks() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 100.0


def test_percentile_of_nothing_is_none_and_bounds_are_checked() -> None:
    assert percentile([], 50) is None
    assert percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def _receipt(sub: int, seq: int, sent: float, received: float) -> Receipt:
    return (sub, seq, f"evt_{seq}", sent, received)


def test_analyse_counts_lost_duplicated_and_unexpected() -> None:
    receipts = [
        _receipt(0, 0, 10.0, 10.010),
        _receipt(1, 0, 10.0, 10.020),
        _receipt(0, 1, 10.0, 10.030),
        _receipt(0, 1, 10.0, 10.500),  # a second copy
        _receipt(5, 1, 10.0, 10.040),  # a subscription outside the run
        _receipt(0, -1, 9.0, 9.5),  # the warm-up event
    ]
    stats = analyse(receipts, subs=range(2), seqs=range(2))
    assert stats.expected == 4
    assert stats.received == 4
    assert stats.lost == 1  # (sub 1, seq 1) never came
    assert stats.duplicated == 1
    assert stats.unexpected == 2
    # Latency counts the first copy only: 10, 20 and 30 ms.
    assert stats.p50_ms == pytest.approx(20.0)
    assert stats.max_ms == pytest.approx(30.0)
    assert stats.first_at == pytest.approx(10.010)
    assert stats.last_at == pytest.approx(10.030)
    assert stats.deliveries_per_s == pytest.approx(3 / 0.020)


def test_analyse_of_nothing_reports_everything_lost() -> None:
    stats = analyse([], subs=range(3), seqs=range(10))
    assert stats.lost == 30
    assert stats.deliveries_per_s is None
    assert stats.p99_ms is None


def test_rates_and_ratios_refuse_empty_spans() -> None:
    assert rate_per_s(100, 1.0, 3.0) == 50.0
    assert rate_per_s(100, 3.0, 3.0) is None
    assert rate_per_s(0, 1.0, 3.0) is None
    assert rate_per_s(5, None, 3.0) is None
    assert ratio(1.0, 4.0) == 0.25
    assert ratio(1.0, 0.0) is None
    assert ratio(None, 4.0) is None


def test_pairs_expect_each_event_at_its_own_subscription_only() -> None:
    sub_of_seq = [3, 0, 3]
    receipts = [
        (3, 0, "evt_0", 0.0, 0.010),
        (0, 1, "evt_1", 0.0, 0.020),
        (0, 1, "evt_1", 0.0, 0.030),  # a duplicate
        (1, 2, "evt_2", 0.0, 0.040),  # the wrong subscription
    ]
    stats = analyse_pairs(receipts, sub_of_seq)
    assert (stats.expected, stats.lost, stats.duplicated, stats.unexpected) == (3, 1, 1, 1)
