"""The http scenario's load generator: its wrk script and the summary line it prints."""

from __future__ import annotations

import pytest

from bench.loadgen import SEQ_PER_THREAD, lua_script, parse_done_line
from bench.stats import analyse_ids


def test_the_script_posts_unique_events_with_the_token() -> None:
    script = lua_script("bench1-wrk", "bench-token-0123", "bench.tick")
    assert 'wrk.headers["Authorization"] = "Bearer bench-token-0123"' in script
    assert '"/v1/events"' in script
    assert f"thread_no * {SEQ_PER_THREAD} + counter" in script
    assert 'local tag = "bench1-wrk"' in script


def test_the_script_refuses_values_that_would_break_it() -> None:
    with pytest.raises(ValueError):
        lua_script('x" .. os.exit() .. "', "token", "bench.tick")


def test_the_summary_line_is_read_from_what_wrk_printed() -> None:
    stdout = (
        "Running 20s test @ http://127.0.0.1:1234\n  2 threads and 32 connections\n"
        '{"requests":60000,"duration_us":20000000,"status_errors":10,"socket_errors":1,'
        '"timeouts":0,"p50_us":9100,"p99_us":41000,"max_us":90000}\n'
    )
    result = parse_done_line(stdout)
    assert result.accepted == 59_990
    assert result.accepted_per_s == pytest.approx(2999.5)
    assert result.p99_ms == pytest.approx(41.0)
    with pytest.raises(RuntimeError):
        parse_done_line("wrk: connection refused\n")


def test_deliveries_are_matched_to_accepted_events_by_webhook_id() -> None:
    accepted = {"evt_a": 10.0, "evt_b": 10.0, "evt_c": 10.5}
    receipts = [
        (0, 7, "evt_a", 0.0, 10.010),
        (0, 8, "evt_b", 0.0, 10.030),
        (0, 8, "evt_b", 0.0, 10.400),  # a second copy
        (0, -1, "evt_warmup", 0.0, 9.0),  # not one of the load's events
    ]
    stats = analyse_ids(receipts, accepted)
    assert stats.expected == 3
    assert stats.lost == 1  # evt_c never came
    assert stats.duplicated == 1
    assert stats.unexpected == 1
    assert stats.max_ms == pytest.approx(30.0)
