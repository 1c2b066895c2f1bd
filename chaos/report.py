"""The suite's table and JSON document."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from chaos.outcome import MAX_DUPLICATE_RATIO, MAX_RECOVERY_S, FaultOutcome

COLUMNS = (
    ("fault", 24),
    ("confirmed", 9),
    ("expected", 8),
    ("delivered", 9),
    ("lost", 6),
    ("dup", 5),
    ("first s", 7),
    ("backlog s", 9),
    ("gap s", 6),
    ("verdict", 7),
)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def row(outcome: FaultOutcome) -> list[str]:
    return [
        outcome.fault,
        str(outcome.confirmed),
        str(outcome.expected),
        str(outcome.delivered),
        str(outcome.lost),
        str(outcome.duplicated),
        _seconds(outcome.first_after_s),
        _seconds(outcome.backlog_s),
        _seconds(outcome.longest_gap_s),
        "pass" if outcome.passed else "FAIL",
    ]


def render_table(outcomes: Sequence[FaultOutcome]) -> str:
    """One line per fault, then why each failing fault failed."""
    lines = ["  ".join(name.rjust(width) for name, width in COLUMNS)]
    for outcome in outcomes:
        cells = row(outcome)
        lines.append("  ".join(c.rjust(w) for c, (_, w) in zip(cells, COLUMNS, strict=True)))
    for outcome in outcomes:
        if outcome.failures:
            lines.append(f"{outcome.fault}: " + "; ".join(outcome.failures))
    return "\n".join(lines)


def render_fault(outcome: FaultOutcome) -> str:
    """What is printed as soon as one fault is done."""
    figures = (
        f"{outcome.fault}: confirmed {outcome.confirmed}, expected {outcome.expected}, "
        f"delivered {outcome.delivered}, lost {outcome.lost}, duplicated {outcome.duplicated}, "
        f"recovered in {_seconds(outcome.first_after_s)}s (first) / "
        f"{_seconds(outcome.backlog_s)}s (backlog), longest gap "
        f"{_seconds(outcome.longest_gap_s)}s -> {'pass' if outcome.passed else 'FAIL'}"
    )
    details = [f"  - {text}" for text in [*outcome.failures, *outcome.notes]]
    return "\n".join([figures, *details])


def to_json(outcomes: Sequence[FaultOutcome], options: dict[str, Any]) -> dict[str, Any]:
    return {
        "options": options,
        "thresholds": {
            "lost": 0,
            "duplicates_ratio": MAX_DUPLICATE_RATIO,
            "recovery_s": MAX_RECOVERY_S,
        },
        "passed": all(o.passed for o in outcomes),
        "faults": [{**dataclasses.asdict(o), "passed": o.passed} for o in outcomes],
    }
