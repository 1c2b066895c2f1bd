"""Durations (`500ms`, `5s`, `2m`, `1h`, `5d`) and byte sizes (`256KiB`) as written in settings."""

from __future__ import annotations

import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_DURATION_UNITS_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE = re.compile(r"^\s*(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$")
_SIZE_UNITS = {
    None: 1,
    "B": 1,
    "KB": 1000,
    "KiB": 1024,
    "MB": 1000**2,
    "MiB": 1024**2,
    "GB": 1000**3,
    "GiB": 1024**3,
}


def parse_duration_s(text: str | float | int) -> float:
    """Seconds in a duration such as `500ms` or `5d`; a bare number is seconds."""
    if isinstance(text, int | float):
        if text < 0:
            raise ValueError("a duration cannot be negative")
        return float(text)
    match = _DURATION.match(text)
    if match is None:
        try:
            return parse_duration_s(float(text))
        except ValueError:
            raise ValueError(
                f"{text!r} is not a duration: write a number and a unit, as 500ms, 5s, 2m, 1h or 5d"
            ) from None
    value, unit = match.groups()
    return float(value) * _DURATION_UNITS_S[unit]


def format_duration(seconds: float) -> str:
    """The shortest exact spelling of a duration: 0.2 -> `200ms`, 300 -> `5m`."""
    ms = round(seconds * 1000)
    for unit, size_ms in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms >= size_ms and ms % size_ms == 0:
            return f"{ms // size_ms}{unit}"
    return f"{ms}ms"


def parse_size_bytes(text: str | int) -> int:
    """Bytes in a size such as `256KiB` or `1MB`; a bare number is bytes."""
    if isinstance(text, int):
        return text
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a size: write a number and a unit, as 256KiB or 1MiB")
    value, unit = match.groups()
    return int(value) * _SIZE_UNITS[unit]
