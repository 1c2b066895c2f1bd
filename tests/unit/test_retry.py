"""The retry schedule: delays per attempt, queue choice for asked delays, Retry-After parsing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from shared.retry import RetrySchedule, park_length, parse_retry_after

DEFAULT = RetrySchedule((5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 50400.0, 72000.0, 86400.0))


def test_attempts_are_one_more_than_delays() -> None:
    assert DEFAULT.max_attempts == 10
    assert RetrySchedule((0.2, 0.4)).max_attempts == 3


def test_delay_after_each_attempt_follows_the_schedule() -> None:
    schedule = RetrySchedule((0.2, 0.4))
    assert schedule.delay_after(1) == 0.2
    assert schedule.delay_after(2) == 0.4
    assert schedule.is_last(3)
    with pytest.raises(ValueError):
        schedule.delay_after(3)


def test_an_attempt_past_a_shortened_schedule_is_the_last() -> None:
    assert RetrySchedule((0.2,)).is_last(5)


@pytest.mark.parametrize(
    ("wanted", "chosen"),
    [(0.0, 5.0), (5.0, 5.0), (5.1, 300.0), (299.0, 300.0), (86400.0, 86400.0), (1e9, 86400.0)],
)
def test_an_asked_delay_gets_the_smallest_queue_at_least_as_long(
    wanted: float, chosen: float
) -> None:
    assert DEFAULT.queue_delay_at_least(wanted) == chosen


def test_repeated_delays_share_one_queue() -> None:
    assert RetrySchedule((1.0, 1.0, 3.0)).queue_delays_s == (1.0, 3.0)


def test_deferrals_wait_longer_each_time_up_to_the_patience() -> None:
    waits = [DEFAULT.deferral_delay(n, patience_s=15.0) for n in (1, 2, 3, 9)]
    assert waits == [5.0, 300.0, 300.0, 300.0]
    short = RetrySchedule((0.2, 0.4))
    assert [short.deferral_delay(n, patience_s=2.0) for n in (1, 2, 3)] == [0.2, 0.4, 0.4]


def test_repeated_deferrals_of_a_saturated_target_wait_beyond_one_timeout_not_forever() -> None:
    # A 5 s timeout is covered by the 5 s queue: a target that had to wait once comes back
    # after 5 s, one still full 5 s later is deferred for 5 minutes, never for the 30 m queue.
    waits = [DEFAULT.deferral_delay(n, patience_s=5.0) for n in (1, 2, 3, 20, 10_000)]
    assert waits == [5.0, 300.0, 300.0, 300.0, 300.0]
    # A short timeout grows its patience step by step before it needs the 5 m queue.
    steps = RetrySchedule((1.0, 10.0, 100.0, 1000.0))
    assert [steps.deferral_delay(n, patience_s=1.0) for n in (1, 2, 3, 4, 5, 6)] == [
        1.0,
        10.0,
        10.0,
        10.0,
        100.0,
        100.0,
    ]


def test_retry_after_in_seconds() -> None:
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(" 0 ") == 0.0


def test_retry_after_as_http_date() -> None:
    now = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(later, now) == 90.0
    earlier = format_datetime(now - timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(earlier, now) == 0.0


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "1.5", "Mon, 99 Foo 2024"])
def test_unreadable_retry_after_is_ignored(value: str | None) -> None:
    assert parse_retry_after(value) is None


@pytest.mark.parametrize(
    ("wanted", "chosen"),
    [(0.0, 5.0), (4.9, 5.0), (5.0, 5.0), (299.0, 5.0), (300.0, 300.0), (1e9, 86400.0)],
)
def test_a_park_gets_the_longest_queue_at_most_as_long(wanted: float, chosen: float) -> None:
    assert DEFAULT.queue_delay_at_most(wanted) == chosen


def test_a_park_is_short_at_first_and_grows_while_the_target_stays_stuck() -> None:
    lengths = [park_length(stuck, patience_s=15.0) for stuck in (7.5, 15.0, 30.0, 60.0, 600.0)]
    assert lengths == [15.0, 30.0, 60.0, 240.0, 300.0]
    # A target stuck for seconds: its parked deliveries wait the shortest queue, not 5 min.
    assert DEFAULT.queue_delay_at_most(park_length(8.0, 15.0)) == 5.0
    assert DEFAULT.queue_delay_at_most(park_length(600.0, 15.0)) == 300.0
