"""Durations and sizes as the contract writes them (`500ms`, `5s`, `2m`, `1h`, `5d`, `256KiB`)."""

from __future__ import annotations

import pytest

from shared.durations import format_duration, parse_duration_s, parse_size_bytes


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("5s", 5.0),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("5d", 432000.0),
        ("1.5s", 1.5),
        (" 30s ", 30.0),
        ("0ms", 0.0),
        ("15", 15.0),
        (7, 7.0),
        (0.25, 0.25),
    ],
)
def test_parses_each_unit(text: str | float, seconds: float) -> None:
    assert parse_duration_s(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5 weeks", "ms", "5sec", "-5s", "5m30s", "1e3x"])
def test_refuses_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration_s(text)


def test_refuses_a_negative_number() -> None:
    with pytest.raises(ValueError, match="negative"):
        parse_duration_s(-1)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.2, "200ms"),
        (0.4, "400ms"),
        (5, "5s"),
        (300, "5m"),
        (1800, "30m"),
        (7200, "2h"),
        (86400, "1d"),
        (90, "90s"),
        (1.5, "1500ms"),
    ],
)
def test_formats_the_shortest_exact_spelling(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration_s(text) == pytest.approx(seconds)


def test_the_default_schedule_round_trips() -> None:
    schedule = "5s,5m,30m,2h,5h,10h,14h,20h,24h".split(",")
    assert [format_duration(parse_duration_s(t)) for t in schedule] == [
        "5s",
        "5m",
        "30m",
        "2h",
        "5h",
        "10h",
        "14h",
        "20h",
        "1d",
    ]


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("256KiB", 262144),
        ("1MB", 1_000_000),
        ("1MiB", 1_048_576),
        ("10KB", 10_000),
        ("512", 512),
        ("64B", 64),
        (4096, 4096),
        ("1GiB", 1024**3),
    ],
)
def test_parses_sizes(text: str | int, size: int) -> None:
    assert parse_size_bytes(text) == size


@pytest.mark.parametrize("text", ["", "1.5MiB", "ten", "256 kib", "-1"])
def test_refuses_what_is_not_a_size(text: str) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size_bytes(text)
