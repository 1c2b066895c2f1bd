"""The bench's table and JSON: each target marked met or missed from the figures."""

from __future__ import annotations

import orjson

from bench.loadgen import WrkResult
from bench.report import figures, render_summary, render_table, summarize, to_json
from bench.scenarios import ScenarioResult
from bench.stats import analyse

MB = 1024 * 1024


def _result(name: str, rate: float, *, lost: int = 0, rss_mb: int = 100) -> ScenarioResult:
    # Two subscriptions x `count` events, received evenly over one second at `rate`.
    count = int(rate // 2)
    receipts = [
        (sub, seq, f"evt_{seq}", 0.0, 1.0 + (seq * 2 + sub) / rate)
        for seq in range(count)
        for sub in range(2)
        if (seq * 2 + sub) >= lost
    ]
    deliveries = analyse(receipts, range(2), range(count))
    return ScenarioResult(
        name=name,
        events=count,
        subscriptions=2,
        deliveries=deliveries,
        healthy=analyse(receipts, range(1, 2), range(count)),
        events_per_s_confirmed=5000.0,
        peak_rss_bytes={"sender": rss_mb * MB, "ingest": 60 * MB},
    )


def _status(results: dict[str, ScenarioResult]) -> dict[str, str]:
    return {f.name: f.status for f in figures(results)}


def test_targets_are_met_when_the_figures_reach_them() -> None:
    results = {"fanout": _result("fanout", 4000), "ceiling": _result("ceiling", 6000)}
    status = _status(results)
    assert status["fanout: deliveries/s"] == "met"
    assert status["fanout: share of ceiling"] == "met"
    assert status["fanout: lost"] == "met"
    assert status["fanout: duplicated"] == "met"
    assert status["fanout: sender peak RSS"] == "met"
    assert status["fanout: ingest peak RSS"] == "met"  # every service: <= 150 MB


def test_targets_are_missed_on_slow_lossy_or_large_runs() -> None:
    results = {
        "fanout": _result("fanout", 1000, lost=3, rss_mb=200),
        "ceiling": _result("ceiling", 6000),
    }
    status = _status(results)
    assert status["fanout: deliveries/s"] == "missed"
    assert status["fanout: share of ceiling"] == "missed"
    assert status["fanout: lost"] == "missed"
    assert status["fanout: sender peak RSS"] == "missed"


def test_noisy_is_compared_with_the_same_subscriptions_in_fanout() -> None:
    results = {"fanout": _result("fanout", 4000), "noisy": _result("noisy", 3000)}
    noisy = next(f for f in figures(results) if f.name == "noisy: healthy deliveries/s vs fanout")
    assert noisy.status == "missed"
    assert noisy.value is not None and 0.5 < noisy.value < 0.9


def test_a_missing_reference_is_a_miss_not_a_crash() -> None:
    status = _status({"fanout": _result("fanout", 4000)})
    assert status["fanout: share of ceiling"] == "missed"


def test_table_and_json_carry_the_same_figures() -> None:
    results = {"fanout": _result("fanout", 4000), "ceiling": _result("ceiling", 6000)}
    results["fanout"].notes.append("a note")
    table = render_table(results)
    assert "fanout: deliveries/s" in table
    assert ">= 3,500 /s" in table
    assert "note (fanout): a note" in table
    document = orjson.loads(orjson.dumps(to_json(results, {"events": 5000})))
    names = [f["name"] for f in document["figures"]]
    assert names == [f.name for f in figures(results)]
    assert document["machine"]["cpus"] >= 1
    assert document["scenarios"]["fanout"]["deliveries"]["lost"] == 0


def test_cpu_is_shown_as_a_share_of_a_core_and_per_delivery() -> None:
    result = _result("fanout", 4000)  # 4,000 deliveries
    result.cpu_seconds = {"sender": 2.0, "gone": None}
    result.cpu_window_s = 4.0
    by_name = {f.name: f for f in figures({"fanout": result})}
    assert by_name["fanout: sender CPU"].value == 0.5
    assert by_name["fanout: sender CPU per delivery"].value == 0.5  # ms
    assert by_name["fanout: gone CPU"].value is None
    assert "50% of a core" in render_table({"fanout": result})


def test_repeated_passes_are_judged_on_the_median_and_the_worst_loss() -> None:
    # A machine whose speed moves: one slow pass among three does not decide the verdict,
    # but a loss in any pass does, and so does the largest peak memory.
    passes = [
        {"fanout": _result("fanout", rate), "ceiling": _result("ceiling", 6000)}
        for rate in (4000, 3000, 3800)
    ]
    passes[1]["fanout"] = _result("fanout", 3000, lost=1, rss_mb=160)
    summary = {s.figure.name: s for s in summarize(passes)}

    throughput = summary["fanout: deliveries/s"]
    assert throughput.passes == 3
    assert throughput.low is not None and throughput.high is not None
    assert throughput.low < throughput.figure.value < throughput.high  # type: ignore[operator]
    assert throughput.figure.status == "met"  # the median pass (3,800/s)
    assert summary["fanout: lost"].figure.value == 1
    assert summary["fanout: lost"].figure.status == "missed"
    assert summary["fanout: sender peak RSS"].figure.status == "missed"
    table = render_summary(passes)
    assert "worst of 3" in table
    assert "(3 passes" in table


def _many(rate: float, baseline_rate: float, *, rss_mb: int, ready_s: float) -> ScenarioResult:
    many = _result("many-subscriptions", rate, rss_mb=rss_mb)
    many.peak_rss_bytes["fanout"] = rss_mb * MB
    many.ready_s = {"fanout": ready_s, "sender": ready_s, "ingest": 9.0}
    many.api_p99_ms = {"GET /v1/deliveries/{id}": 12.0, "GET /v1/subscriptions": 70.0}
    many.baseline = _result("many-subscriptions-10", baseline_rate)
    return many


def test_many_subscriptions_is_judged_on_memory_readiness_api_and_the_10_sub_run() -> None:
    status = _status({"many-subscriptions": _many(950, 1000, rss_mb=120, ready_s=1.5)})
    assert status["many-subscriptions: deliveries/s vs 2 subscriptions"] == "met"
    assert status["many-subscriptions: fanout peak RSS"] == "met"
    assert status["many-subscriptions: sender ready after"] == "met"
    assert status["many-subscriptions: ingest ready after"] == ""
    assert status["many-subscriptions: API p99 GET /v1/deliveries/{id}"] == "met"
    assert status["many-subscriptions: API p99 GET /v1/subscriptions"] == "missed"
    assert "many-subscriptions-10: deliveries/s" in status  # the reference is shown too

    status = _status({"many-subscriptions": _many(800, 1000, rss_mb=1700, ready_s=13.5)})
    assert status["many-subscriptions: deliveries/s vs 2 subscriptions"] == "missed"
    assert status["many-subscriptions: fanout peak RSS"] == "missed"
    assert status["many-subscriptions: fanout ready after"] == "missed"


def test_single_subscription_scenarios_have_their_own_targets() -> None:
    fanout_1 = _result("fanout-1", 3500)
    fanout_1.cpu_seconds = {"sender": 1.0, "rabbitmq": 1.1, "postgres": None}
    fanout_1.cpu_window_s = 1.0
    steady_1 = _result("steady-1", 1000)
    results = {"fanout-1": fanout_1, "steady-1": steady_1, "ceiling": _result("ceiling", 6000)}
    by_name = {f.name: f for f in figures(results)}
    assert by_name["fanout-1: share of ceiling"].status == "met"  # 3,500 of 6,000
    assert by_name["fanout-1: deliveries/s"].status == ""  # 3,500/s is fanout's alone
    # 2.1 CPU seconds over 3,500 deliveries (1,750 events x the fixture's 2 subscriptions).
    every = by_name["fanout-1: all processes CPU per delivery"]
    assert every.value is not None and abs(every.value - 0.6) < 1e-9
    net = by_name["fanout-1: all processes CPU per delivery, net"]
    assert net.status == "missed"  # 0.6 ms > 0.5 ms: no background measured
    # Others used 0.5 CPU s/s of the shared servers: 0.5 s of the 2.1 s was theirs.
    fanout_1.cpu_background_per_s = {"rabbitmq": 0.3, "postgres": 0.2}
    net = {f.name: f for f in figures(results)}["fanout-1: all processes CPU per delivery, net"]
    assert net.value is not None and abs(net.value - 1.6 / 3.5) < 1e-9
    assert net.status == "met"
    p99 = by_name["steady-1: latency p99"]
    assert p99.at_most == 50.0
    assert p99.status == ("met" if p99.value is not None and p99.value <= 50 else "missed")


def test_http_reports_what_wrk_saw() -> None:
    result = _result("http", 2000)
    result.load = WrkResult(
        requests=60_000,
        duration_s=20.0,
        status_errors=0,
        socket_errors=0,
        timeouts=0,
        p50_ms=9.0,
        p99_ms=61.0,
        max_ms=120.0,
    )
    by_name = {f.name: f for f in figures({"http": result})}
    assert by_name["http: accepted events/s"].value == 3000.0
    assert by_name["http: request p99"].status == "missed"
    assert by_name["http: lost"].status == "met"
    assert "http: request p99" in render_table({"http": result})
