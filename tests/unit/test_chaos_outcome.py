"""The fault suite's verdict: what counts as lost, duplicated and recovered, and what fails."""

from __future__ import annotations

import pytest

from bench.httpwire import Request
from bench.receiver import signed_by
from bench.stats import Receipt
from chaos.cli import parse_args
from chaos.outcome import assess
from shared.signing import generate_secret, secret_bytes, sign

END = 1000.0
"""The fault ended at this Unix time in every case below."""


def _receipts(confirmed: dict[int, float], subs: int, delay_s: float = 0.5) -> list[Receipt]:
    """Each confirmed event received once per subscription, `delay_s` after it was sent, but
    never before the fault's end (everything waited for the fault)."""
    return [
        (sub, seq, f"evt_{seq}", sent_at, max(sent_at, END) + delay_s)
        for seq, sent_at in confirmed.items()
        for sub in range(subs)
    ]


def _stream(before: int = 50, after: int = 50) -> dict[int, float]:
    """Events sent one per 0.1 s, `before` of them before the fault ended, `after` after."""
    return {seq: END - (before - seq) * 0.1 for seq in range(before + after)}


def test_a_fault_where_everything_arrives_once_soon_passes() -> None:
    confirmed = _stream()

    outcome = assess("f", _receipts(confirmed, 2), confirmed, range(2), END)

    assert outcome.passed, outcome.failures
    assert (outcome.confirmed, outcome.expected, outcome.delivered) == (100, 200, 200)
    assert (outcome.lost, outcome.duplicated, outcome.confirmed_after) == (0, 0, 50)
    assert outcome.first_after_s == pytest.approx(0.5)
    assert outcome.backlog_s == pytest.approx(0.5)


def test_one_missing_delivery_is_a_loss_and_fails() -> None:
    confirmed = _stream()
    receipts = _receipts(confirmed, 2)[1:]

    outcome = assess("f", receipts, confirmed, range(2), END)

    assert outcome.lost == 1
    assert not outcome.passed
    assert any("lost" in reason for reason in outcome.failures)


def test_unconfirmed_events_are_not_expected_but_are_counted_when_delivered() -> None:
    confirmed = _stream()
    receipts = [*_receipts(confirmed, 1), (0, 999, "evt_x", END, END + 1)]

    outcome = assess("f", receipts, confirmed, range(1), END)

    assert outcome.passed, outcome.failures
    assert outcome.unconfirmed_delivered == 1


def test_duplicates_above_one_percent_fail_and_up_to_it_pass() -> None:
    confirmed = _stream()
    receipts = _receipts(confirmed, 2)

    assert assess("f", receipts + receipts[:2], confirmed, range(2), END).passed
    outcome = assess("f", receipts + receipts[:3], confirmed, range(2), END)

    assert outcome.duplicated == 3
    assert not outcome.passed


def test_a_recovery_over_30_seconds_fails() -> None:
    confirmed = _stream()

    outcome = assess("f", _receipts(confirmed, 1, delay_s=31.0), confirmed, range(1), END)

    assert not outcome.passed
    assert any("recovery took" in reason for reason in outcome.failures)


def test_a_fault_with_nothing_confirmed_after_it_proves_nothing() -> None:
    confirmed = _stream(after=0)

    outcome = assess("f", _receipts(confirmed, 1), confirmed, range(1), END)

    assert not outcome.passed


def test_a_bad_signature_fails() -> None:
    confirmed = _stream()

    outcome = assess("f", _receipts(confirmed, 1), confirmed, range(1), END, bad_signatures=1)

    assert not outcome.passed


def _request(headers: dict[str, str], body: bytes) -> Request:
    return Request("POST", "/s/t/0", headers, body, 0)


def test_the_receiver_accepts_a_valid_signature_and_refuses_a_forged_one() -> None:
    key = secret_bytes(generate_secret())
    body = b'{"type": "bench.tick"}'
    good = {"webhook-id": "evt_1", "webhook-timestamp": "1700000000"}
    good["webhook-signature"] = sign(key, "evt_1", 1700000000, body)
    forged = {**good, "webhook-signature": sign(secret_bytes(generate_secret()), "evt_1", 1, body)}

    assert signed_by(key, _request(good, body))
    assert not signed_by(key, _request(forged, body))
    assert not signed_by(key, _request({"webhook-id": "evt_1"}, body))


def test_unknown_faults_are_refused_on_the_command_line() -> None:
    assert parse_args(["--faults", "kill-ingest,memory-alarm"]).faults == (
        "kill-ingest",
        "memory-alarm",
    )
    with pytest.raises(SystemExit):
        parse_args(["--faults", "kill-everything"])


def test_the_longest_gap_spans_the_silence_from_the_fault_to_the_next_delivery() -> None:
    confirmed = _stream()
    receipts = [
        (0, seq, f"evt_{seq}", at, at + 0.1 if at < END - 3 else END + 2.0)
        for seq, at in confirmed.items()
    ]

    outcome = assess("f", receipts, confirmed, range(1), END, fault_start=END - 3.0)

    assert outcome.longest_gap_s == pytest.approx(5.0)
