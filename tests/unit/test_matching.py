"""Subscription patterns: which are valid, and which event types each one covers."""

from __future__ import annotations

import pytest

from shared.matching import candidate_keys, is_valid_pattern, type_matches


@pytest.mark.parametrize(
    "pattern",
    ["*", "invoice.paid", "invoice.*", "billing.invoice.*", "a.b.c.d", "a.b.c.*", "a_1.b2"],
)
def test_valid_patterns(pattern: str) -> None:
    assert is_valid_pattern(pattern)


@pytest.mark.parametrize(
    "pattern",
    [
        "",
        "invoice",
        "Invoice.paid",
        "invoice.",
        ".paid",
        "invoice..paid",
        "invoice.*.paid",
        "*.paid",
        "invoice*",
        "invoice.p*",
        "**",
        "a.b.c.d.e",
        "1nvoice.paid",
        "invoice.paid ",
        "invoice-x.paid",
    ],
)
def test_invalid_patterns(pattern: str) -> None:
    assert not is_valid_pattern(pattern)


@pytest.mark.parametrize(
    ("pattern", "event_type", "expected"),
    [
        ("invoice.paid", "invoice.paid", True),
        ("invoice.paid", "invoice.paid_late", False),
        ("invoice.paid", "invoice.paid.late", False),
        ("invoice.*", "invoice.paid", True),
        ("invoice.*", "invoice.line.added", True),
        ("invoice.*", "invoices.paid", False),
        ("invoice.*", "invoice", False),
        ("invoice.*", "billing.invoice.paid", False),
        ("billing.invoice.*", "billing.invoice.paid", True),
        ("billing.invoice.*", "billing.invoices.paid", False),
        ("*", "invoice.paid", True),
        ("*", "a.b.c.d", True),
    ],
)
def test_type_matches(pattern: str, event_type: str, expected: bool) -> None:
    assert type_matches(pattern, event_type) is expected


@pytest.mark.parametrize("event_type", ["invoice.paid", "invoice.line.added", "a.b.c.d", "x_1.y_2"])
def test_candidate_keys_are_exactly_the_valid_patterns_that_match(event_type: str) -> None:
    keys = candidate_keys(event_type)
    assert len(keys) == len(set(keys))
    assert all(is_valid_pattern(k) and type_matches(k, event_type) for k in keys)
    # Any other matching pattern would be missed by an index looked up with these keys.
    parts = event_type.split(".")
    every_matching = {"*", event_type} | {".".join(parts[:i]) + ".*" for i in range(1, 5)}
    matching = {p for p in every_matching if is_valid_pattern(p) and type_matches(p, event_type)}
    assert set(keys) == matching


def test_candidate_keys_of_a_two_word_type() -> None:
    assert sorted(candidate_keys("invoice.paid")) == sorted(["invoice.paid", "invoice.*", "*"])
