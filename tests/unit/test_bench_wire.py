"""The bench receiver's HTTP parsing and routing, the publisher's payloads and /proc parsing."""

from __future__ import annotations

import socket

import orjson
import pytest

from bench.httpwire import MAX_BODY_BYTES, BadRequest, parse_request
from bench.procs import (
    ephemeral_port_range,
    free_port,
    parse_counters,
    parse_peak_rss,
    with_database,
)
from bench.publisher import event_body, send_times
from bench.receiver import route


def _post(body: bytes, extra: str = "") -> bytes:
    return (
        f"POST /s/tag/3 HTTP/1.1\r\nHost: x\r\nWebhook-Id: evt_1\r\n{extra}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def test_parse_waits_for_a_whole_request_then_reads_it() -> None:
    raw = _post(b'{"a":1}')
    assert parse_request(raw[:10]) is None
    assert parse_request(raw[:-2]) is None
    request = parse_request(raw)
    assert request is not None
    assert (request.method, request.path, request.body) == ("POST", "/s/tag/3", b'{"a":1}')
    assert request.headers["webhook-id"] == "evt_1"
    assert request.size == len(raw)
    assert request.keep_alive


def test_parse_reads_pipelined_requests_one_at_a_time() -> None:
    raw = _post(b"one") + _post(b"two", "Connection: close\r\n")
    first = parse_request(raw)
    assert first is not None and first.body == b"one"
    second = parse_request(raw[first.size :])
    assert second is not None and second.body == b"two"
    assert not second.keep_alive


def test_parse_decodes_chunked_bodies() -> None:
    head = b"POST /s/t/0 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    raw = head + b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n"
    assert parse_request(raw[:-1]) is None
    request = parse_request(raw)
    assert request is not None
    assert request.body == b"abcde"
    assert request.size == len(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b"GARBAGE\r\n\r\n",
        b"POST / HTTP/1.1\r\nno colon here\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        f"POST / HTTP/1.1\r\nContent-Length: {MAX_BODY_BYTES + 1}\r\n\r\n".encode(),
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
)
def test_parse_refuses_malformed_requests(raw: bytes) -> None:
    with pytest.raises(BadRequest):
        parse_request(raw)


def test_routes_name_the_kind_the_tag_and_the_subscription() -> None:
    assert route("/s/benchx_fanout/7") == ("s", "benchx_fanout", 7)
    assert route("/h/t/0?x=1") == ("h", "t", 0)
    assert route("/s/t/notanumber") is None
    assert route("/other/t/1") is None
    assert route("/s/t") is None


def test_event_body_is_a_contract_envelope_with_seq_and_send_time() -> None:
    body = orjson.loads(event_body("ns", 42, 1700000000.5))
    assert body == {
        "type": "bench.tick",
        "id": "ns-42",
        "data": {"seq": 42, "sent_at": 1700000000.5},
    }


def test_send_times_spread_events_evenly_at_a_rate() -> None:
    assert send_times(10.0, 3, None) == [10.0, 10.0, 10.0]
    assert send_times(10.0, 3, 4.0) == [10.0, 10.25, 10.5]


def test_peak_rss_is_read_from_vmhwm() -> None:
    status = "Name:\tpython\nVmPeak:\t  999 kB\nVmHWM:\t  2048 kB\nVmRSS:\t 1024 kB\n"
    assert parse_peak_rss(status) == 2048 * 1024
    assert parse_peak_rss("Name:\tkthread\n") is None


def test_with_database_swaps_only_the_database_name() -> None:
    url = "postgresql://postgres:pw@127.0.0.1:5432/hookline?sslmode=disable"
    assert with_database(url, "other") == (
        "postgresql://postgres:pw@127.0.0.1:5432/other?sslmode=disable"
    )


def test_counters_are_read_from_the_metrics_page() -> None:
    page = (
        "# HELP hookline_delivery_attempts_total Attempts.\n"
        "# TYPE hookline_delivery_attempts_total counter\n"
        'hookline_delivery_attempts_total{outcome="success"} 42.0\n'
        "hookline_deliveries_deferred_total 3.0\n"
        "hookline_deliveries_deferred_created 1.7e9\n"
        'hookline_delivery_duration_seconds_bucket{le="0.1"} 5.0\n'
        "python_gc_objects_collected_total 9.0\n"
    )
    assert parse_counters(page) == {
        'hookline_delivery_attempts_total{outcome="success"}': 42.0,
        "hookline_deliveries_deferred_total": 3.0,
    }


def test_free_ports_are_taken_below_theephemeral_port_range() -> None:
    # Ports the kernel hands out for outgoing connections would collide with a service
    # starting on them a moment later.
    low, _ = ephemeral_port_range()
    for _ in range(20):
        port = free_port()
        assert 1024 <= port < low
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
