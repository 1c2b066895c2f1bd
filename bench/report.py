"""The targets of issues 6, 11 and 17, and the bench's results as a terminal table and as JSON."""

from __future__ import annotations

import dataclasses
import platform
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.scenarios import ScenarioResult
from bench.stats import ratio

MB = 1024 * 1024
Results = Mapping[str, ScenarioResult]


@dataclass(frozen=True)
class Figure:
    """One reported number; with a bound it is a target that is met or missed."""

    name: str
    value: float | None
    unit: str
    at_least: float | None = None
    at_most: float | None = None

    @property
    def target(self) -> str:
        if self.at_least is not None:
            return f">= {_fmt(self.at_least, self.unit)}"
        if self.at_most is not None:
            return f"<= {_fmt(self.at_most, self.unit)}"
        return ""

    @property
    def status(self) -> str:
        """`met`, `missed`, or `` for a figure without a target."""
        if self.at_least is None and self.at_most is None:
            return ""
        if self.value is None:
            return "missed"
        if self.at_least is not None and self.value < self.at_least:
            return "missed"
        if self.at_most is not None and self.value > self.at_most:
            return "missed"
        return "met"


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "%":
        return f"{value * 100:.0f}%"
    if unit == "% core":
        return f"{value * 100:.0f}% of a core"
    if unit in ("", "lost", "dup"):
        return f"{value:.0f}"
    if value >= 100:
        return f"{value:,.0f} {unit}"
    return f"{value:.1f} {unit}" if value >= 10 else f"{value:.2f} {unit}"


def _dps(result: ScenarioResult | None, healthy: bool = False) -> float | None:
    if result is None:
        return None
    stats = result.healthy if healthy else result.deliveries
    return stats.deliveries_per_s if stats is not None else None


SERVICES = ("ingest", "fanout", "sender")
CEILING_SHARE_TARGETS = {"fanout": 0.5, "fanout-1": 0.5}
P99_MS_TARGETS = {"steady": 100.0, "steady-1": 50.0}
ALL_CPU_MS_TARGETS = {"fanout-1": 0.5}
"""CPU per delivery of every measured process together (broker and database included), net
of the shared servers' background load measured just before the scenario."""
REQUEST_P99_MS_TARGET = 50.0
RSS_MB_TARGET = 150.0


def _load_figures(result: ScenarioResult) -> list[Figure]:
    """The http scenario's requests, as wrk measured them."""
    load = result.load
    if load is None:
        return []
    n = result.name
    return [
        Figure(f"{n}: accepted events/s", load.accepted_per_s, "/s"),
        Figure(f"{n}: request p50", load.p50_ms, "ms"),
        Figure(f"{n}: request p99", load.p99_ms, "ms", at_most=REQUEST_P99_MS_TARGET),
        Figure(f"{n}: requests answered >= 400", load.status_errors, ""),
    ]


def _cpu_figures(result: ScenarioResult) -> list[Figure]:
    n = result.name
    d = result.deliveries
    delivered = d.received - d.duplicated
    figures: list[Figure] = []
    for process, used_s in sorted(result.cpu_seconds.items()):
        share = ratio(used_s, result.cpu_window_s)
        per_delivery = ratio(None if used_s is None else used_s * 1000, delivered)
        figures.append(Figure(f"{n}: {process} CPU", share, "% core"))
        figures.append(Figure(f"{n}: {process} CPU per delivery", per_delivery, "ms"))
    if result.cpu_seconds:
        total_s = sum(v for v in result.cpu_seconds.values() if v is not None)
        figures.append(
            Figure(f"{n}: all processes CPU per delivery", ratio(total_s * 1000, delivered), "ms")
        )
        background_s = sum(result.cpu_background_per_s.values()) * result.cpu_window_s
        figures.append(
            Figure(
                f"{n}: all processes CPU per delivery, net",
                ratio(max(0.0, total_s - background_s) * 1000, delivered),
                "ms",
                at_most=ALL_CPU_MS_TARGETS.get(n),
            )
        )
    return figures


def _scenario_figures(result: ScenarioResult, ceiling: ScenarioResult | None) -> list[Figure]:
    n = result.name
    d = result.deliveries
    figures = [
        *_load_figures(result),
        Figure(
            f"{n}: deliveries/s",
            d.deliveries_per_s,
            "/s",
            at_least=3500 if n == "fanout" else None,
        ),
        Figure(f"{n}: lost", d.lost, "lost", at_most=0),
        Figure(f"{n}: duplicated", d.duplicated, "dup", at_most=0),
    ]
    if n != "ceiling":
        figures.append(
            Figure(
                f"{n}: share of ceiling",
                ratio(d.deliveries_per_s, _dps(ceiling)),
                "%",
                at_least=CEILING_SHARE_TARGETS.get(n),
            )
        )
        figures += [
            Figure(f"{n}: events/s confirmed", result.events_per_s_confirmed, "/s"),
            *(
                [Figure(f"{n}: events/s commit to confirm", result.events_per_s_relayed, "/s")]
                if result.events_per_s_relayed is not None
                else []
            ),
            Figure(f"{n}: events/s stored", result.events_per_s_stored, "/s"),
            Figure(f"{n}: Postgres bytes per delivery", result.storage_bytes_per_delivery, "B"),
            Figure(f"{n}: latency p50", d.p50_ms, "ms"),
            Figure(f"{n}: latency p95", d.p95_ms, "ms"),
            Figure(f"{n}: latency p99", d.p99_ms, "ms", at_most=P99_MS_TARGETS.get(n)),
        ]
    for service, rss in sorted(result.peak_rss_bytes.items()):
        figures.append(
            Figure(
                f"{n}: {service} peak RSS",
                None if rss is None else rss / MB,
                "MB",
                at_most=RSS_MB_TARGET if service in SERVICES else None,
            )
        )
    return figures + _cpu_figures(result)


def _many(name: str) -> bool:
    return name.startswith("many-subscriptions")


def _many_figures(result: ScenarioResult, ceiling: ScenarioResult | None) -> list[Figure]:
    """Issue 17's targets: ready time, the API's reads, and deliveries/s against 10 subs."""
    n = result.name
    out: list[Figure] = []
    if result.baseline is not None:
        out += _scenario_figures(result.baseline, ceiling)
        out += _many_figures(result.baseline, ceiling)
        out.append(
            Figure(
                f"{n}: deliveries/s vs {result.baseline.subscriptions} subscriptions",
                ratio(_dps(result), _dps(result.baseline)),
                "%",
                at_least=0.9,
            )
        )
    for service, ready_s in sorted(result.ready_s.items()):
        target = 5.0 if service in ("fanout", "sender") else None
        out.append(Figure(f"{n}: {service} ready after", ready_s, "s", at_most=target))
    for read, p99_ms in result.api_p99_ms.items():
        out.append(Figure(f"{n}: API p99 {read}", p99_ms, "ms", at_most=50))
    return out


def figures(results: Results) -> list[Figure]:
    """Every figure of the run, targets included, in scenario order."""
    ceiling = results.get("ceiling")
    out: list[Figure] = []
    for result in results.values():
        out += _scenario_figures(result, ceiling)
        if _many(result.name):
            out += _many_figures(result, ceiling)
        if result.name == "noisy":
            fanout_healthy = _dps(results.get("fanout"), healthy=True)
            out.append(
                Figure(
                    "noisy: healthy deliveries/s vs fanout",
                    ratio(_dps(result, healthy=True), fanout_healthy),
                    "%",
                    at_least=0.9,
                )
            )
    return out


WORST_OF_PASSES = ("lost", "dup", "MB")
"""Units of figures summarised by their worst pass (nothing lost in *any* run; peak memory)
rather than their median."""


@dataclass(frozen=True)
class Summary:
    """One figure over several passes: the value judged against its target, and the range."""

    figure: Figure
    low: float | None
    high: float | None
    passes: int


def summarize(passes: Sequence[Results]) -> list[Summary]:
    """Each figure over the passes of `--repeat`: the median (the worst for losses,
    duplicates and peak memory), judged against the target, with the lowest and highest.

    On a machine whose speed moves from minute to minute a single pass can land on either
    side of a target; the median of alternating passes is the steadier verdict.
    """
    by_name: dict[str, list[Figure]] = {}
    for results in passes:
        for figure in figures(results):
            by_name.setdefault(figure.name, []).append(figure)
    out: list[Summary] = []
    for name, seen in by_name.items():
        values = sorted(f.value for f in seen if f.value is not None)
        first = seen[0]
        if not values:
            value = None
        elif first.unit in WORST_OF_PASSES:
            value = values[-1]
        else:
            value = statistics.median(values)
        out.append(
            Summary(
                dataclasses.replace(first, name=name, value=value),
                values[0] if values else None,
                values[-1] if values else None,
                len(values),
            )
        )
    return out


def render_summary(passes: Sequence[Results]) -> str:
    """The table of `--repeat`: median (or worst), range over the passes, target, verdict."""
    rows = [("figure", "median", "range", "target", "")]
    for s in summarize(passes):
        f = s.figure
        spread = f"{_fmt(s.low, f.unit)} - {_fmt(s.high, f.unit)}" if s.passes > 1 else ""
        if f.unit in WORST_OF_PASSES:
            spread = f"worst of {s.passes}"
        rows.append((f.name, _fmt(f.value, f.unit), spread, f.target, f.status))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(f"({len(passes)} passes, each running the scenarios in order)")
    return "\n".join(line.rstrip() for line in lines)


def render_table(results: Results) -> str:
    """The terminal table: figure, value, target, met/missed; then each scenario's notes."""
    rows = [("figure", "value", "target", "")]
    rows += [(f.name, _fmt(f.value, f.unit), f.target, f.status) for f in figures(results)]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for result in results.values():
        lines += [f"note ({result.name}): {note}" for note in result.notes]
    return "\n".join(line.rstrip() for line in lines)


def machine() -> dict[str, Any]:
    """The machine the figures came from."""
    import os

    info: dict[str, Any] = {"cpus": os.cpu_count(), "python": platform.python_version()}
    info["cpu_model"] = _first_value(Path("/proc/cpuinfo"), "model name")
    mem_kb = _first_value(Path("/proc/meminfo"), "MemTotal")
    info["memory_gb"] = round(int(mem_kb.split()[0]) / MB, 1) if mem_kb else None
    return info


def _first_value(path: Path, key: str) -> str | None:
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(":")
            if name.strip() == key:
                return value.strip()
    except OSError:
        return None
    return None


def summary_json(passes: Sequence[Results], options: Mapping[str, Any]) -> dict[str, Any]:
    """`--repeat`'s JSON: the summary figures, and every pass as `to_json` writes it."""
    return {
        "machine": machine(),
        "options": dict(options),
        "figures": [
            {
                "name": s.figure.name,
                "value": s.figure.value,
                "low": s.low,
                "high": s.high,
                "passes": s.passes,
                "unit": s.figure.unit,
                "target": s.figure.target or None,
                "status": s.figure.status or None,
            }
            for s in summarize(passes)
        ],
        "passes": [to_json(results, options) for results in passes],
    }


def to_json(results: Results, options: Mapping[str, Any]) -> dict[str, Any]:
    """The same figures as the table, with every scenario's raw statistics."""
    convert: Callable[[Any], Any] = dataclasses.asdict
    return {
        "machine": machine(),
        "options": dict(options),
        "scenarios": {name: convert(result) for name, result in results.items()},
        "figures": [
            {
                "name": f.name,
                "value": f.value,
                "unit": f.unit,
                "target": f.target or None,
                "status": f.status or None,
            }
            for f in figures(results)
        ],
    }
