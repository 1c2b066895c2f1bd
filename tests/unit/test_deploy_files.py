"""The deployment files parse, and name only settings and metrics that Hookline has."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

import shared.backlog  # noqa: F401  (registers the sampled gauges)
from shared.durations import parse_duration_s
from shared.metrics import REGISTRY
from shared.settings import Settings
from tests.support.k8s_render import objects

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
YAML_FILES = sorted(DEPLOY.rglob("*.yaml"))
SERVICES = ("ingest", "fanout", "sender")
CONTRACT_METRICS = (
    "hookline_events_ingested_total",
    "hookline_events_rejected_total",
    "hookline_fanout_deliveries_total",
    "hookline_delivery_attempts_total",
    "hookline_delivery_duration_seconds",
    "hookline_end_to_end_seconds",
    "hookline_dead_lettered_total",
)


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def k8s_objects(kind: str) -> list[dict[str, Any]]:
    """The objects of `kind` in the keda overlay as kubectl renders it (the full set)."""
    return objects("overlays/keda", kind)


def exported_names() -> set[str]:
    """Every metric and sample name /metrics can show (`_total`, `_bucket`, ... included)."""
    names = set()
    for family in REGISTRY.collect():
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    # A labelled metric shows no sample until its first use; its names are known all the same.
    suffixes = {"counter": ("total",), "histogram": ("bucket", "sum", "count")}
    for family in REGISTRY.collect():
        names.update(f"{family.name}_{s}" for s in suffixes.get(family.type, ()))
    return names


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_yaml_parses(path: Path) -> None:
    assert documents(path), f"{path} holds no document"


# In the contract (section 1) and set by deploy/k8s/overlays/reference, implemented by the
# branch of issue 10 (quorum queues); until it is merged Settings ignores it.
CONTRACT_SETTINGS_NOT_YET_HERE = {"HOOKLINE_QUEUE_TYPE"}


def test_every_hookline_variable_is_a_setting() -> None:
    known = {f"HOOKLINE_{name.upper()}" for name in Settings.model_fields}
    known |= CONTRACT_SETTINGS_NOT_YET_HERE
    texts = [p.read_text() for p in [*YAML_FILES, ROOT / "Dockerfile"]]
    used = {v for text in texts for v in re.findall(r"\bHOOKLINE_[A-Z_]+\b", text)}
    assert used, "no HOOKLINE_ variable found: the scan is broken"
    assert used <= known, f"not settings: {sorted(used - known)}"


def test_the_config_map_holds_valid_settings() -> None:
    [config] = k8s_objects("ConfigMap")
    values = {k.removeprefix("HOOKLINE_").lower(): v for k, v in config["data"].items()}
    Settings(**values)


@pytest.mark.parametrize("service", SERVICES)
def test_each_deployment_runs_its_service_safely(service: str) -> None:
    [deployment] = [d for d in k8s_objects("Deployment") if d["metadata"]["name"].endswith(service)]
    pod = deployment["spec"]["template"]
    [container] = pod["spec"]["containers"]
    assert container["args"] == [service]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(ports["metrics"])
    assert {"requests", "limits"} <= set(container["resources"])
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    [config] = k8s_objects("ConfigMap")
    grace_s = parse_duration_s(config["data"]["HOOKLINE_SHUTDOWN_GRACE"])
    assert pod["spec"]["terminationGracePeriodSeconds"] > grace_s
    assert str(ports["metrics"]) == config["data"]["HOOKLINE_METRICS_PORT"]


def test_the_api_service_the_pdbs_and_the_autoscalers_select_real_pods() -> None:
    labels = {
        d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"]
        for d in k8s_objects("Deployment")
    }
    selectors = [s["spec"]["selector"] for s in k8s_objects("Service")]
    selectors += [p["spec"]["selector"]["matchLabels"] for p in k8s_objects("PodDisruptionBudget")]
    for selector in selectors:
        assert any(selector.items() <= pod.items() for pod in labels.values()), selector
    assert len(k8s_objects("PodDisruptionBudget")) == len(SERVICES)
    targets = {s["spec"]["scaleTargetRef"]["name"] for s in k8s_objects("ScaledObject")}
    assert targets == set(labels)


def test_compose_runs_the_brokers_of_the_contract_and_each_service() -> None:
    [compose] = documents(DEPLOY / "compose.yaml")
    services = compose["services"]
    assert services["rabbitmq"]["image"] == "rabbitmq:3.10-management"
    assert services["postgres"]["image"] == "postgres:15"
    for name in (*SERVICES, "migrate"):
        assert services[name]["command"] == [name]


def metric_names_in(text: str) -> set[str]:
    """Names of Hookline's own metrics, and of the process and GC collectors it exports."""
    return set(re.findall(r"\b(?:hookline|process|python_gc)_[a-z_]+\b", text))


def test_the_dashboard_shows_every_contract_metric_and_only_real_ones() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "hookline.json").read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    used = metric_names_in(exprs)
    assert used <= exported_names(), f"unknown metrics: {sorted(used - exported_names())}"
    for name in CONTRACT_METRICS:
        assert any(u.startswith(name) for u in used), f"the dashboard does not show {name}"


def test_alerts_use_real_metrics() -> None:
    [rules] = documents(DEPLOY / "prometheus" / "alerts.yaml")
    alerts = [r for g in rules["groups"] for r in g["rules"]]
    assert {a["alert"] for a in alerts} >= {
        "HooklineDeadLettersRising",
        "HooklineEndToEndLatencyHigh",
        "HooklineNoEventsIngested",
        "HooklineServiceNotReady",
        "HooklineTargetDown",
        "HooklineQueueWithoutConsumer",
        "HooklineBacklogGrowing",
        "HooklineBacklogOld",
        "HooklineAttemptsFailing",
        "HooklineSubscriptionsDisabled",
        "HooklineApiErrors",
    }
    used = metric_names_in(" ".join(a["expr"] for a in alerts))
    assert used <= exported_names(), f"unknown metrics: {sorted(used - exported_names())}"


def test_the_autoscalers_and_the_prometheus_rule_name_only_real_metrics() -> None:
    queries = [
        t["metadata"].get("query", "")
        for s in k8s_objects("ScaledObject")
        for t in s["spec"]["triggers"]
    ]
    queries += [
        r["expr"]
        for p in k8s_objects("PrometheusRule")
        for g in p["spec"]["groups"]
        for r in g["rules"]
    ]
    used = metric_names_in(" ".join(queries))
    assert used, "no metric found: the scan is broken"
    assert used <= exported_names(), f"unknown metrics: {sorted(used - exported_names())}"


def dashboard_exprs() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "hookline.json").read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p["targets"]]


def test_the_dashboard_shows_backlog_consumers_subscriptions_api_and_process() -> None:
    used = metric_names_in(" ".join(dashboard_exprs()))
    for name in (
        "hookline_queue_messages_ready",
        "hookline_queue_consumers",
        "hookline_oldest_pending_delivery_age_seconds",
        "hookline_subscriptions_failing",
        "hookline_subscriptions_parked",
        "hookline_api_requests_total",
        "hookline_api_request_duration_seconds_bucket",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    ):
        assert name in used, name


def test_the_dashboard_works_without_namespace_and_pod_labels() -> None:
    """Under Compose no series has `namespace` or `pod`: every selector on them must accept
    their absence (a regex whose All is `.*`), and rates use Grafana's $__rate_interval."""
    dashboard = json.loads((DEPLOY / "grafana" / "hookline.json").read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    for expr in dashboard_exprs():
        for label, matcher in re.findall(r"\b(namespace|pod)\s*(=~|!=|!~|=)", expr):
            assert (label, matcher) == ("namespace", "=~"), expr
        assert 'namespace=~"$namespace"' in expr or "hookline_build_info{namespace" in expr, expr
        for window in re.findall(r"\[([^\]]+)\]", expr):
            assert window == "$__rate_interval", expr
    namespace = variables["namespace"]
    assert namespace["includeAll"] and namespace["allValue"] == ".*"
    assert namespace["current"]["value"] == ["$__all"]


def test_the_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query, with Grafana's variables given values."""
    from tests.unit.test_alerts import promtool_path

    rules = [
        {
            "record": f"dashboard:query{i}",
            "expr": e.replace("$__rate_interval", "1m").replace("$namespace", ".*"),
        }
        for i, e in enumerate(dashboard_exprs())
    ]
    path = tmp_path / "dashboard.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = subprocess.run(
        [promtool_path(), "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_provisions_prometheus_and_grafana_with_the_alerts_and_the_dashboard() -> None:
    [compose] = documents(DEPLOY / "compose.yaml")
    services = compose["services"]
    prometheus = " ".join(services["prometheus"]["volumes"])
    assert "./prometheus/alerts.yaml:/etc/prometheus/alerts.yaml" in prometheus
    [config] = documents(DEPLOY / "prometheus" / "prometheus.yml")
    assert config["rule_files"] == ["/etc/prometheus/alerts.yaml"]
    targets = {
        t for job in config["scrape_configs"] for c in job["static_configs"] for t in c["targets"]
    }
    for name in SERVICES:
        port = services[name]["environment"]["HOOKLINE_METRICS_PORT"]
        assert f"{name}:{port}" in targets
    grafana = " ".join(services["grafana"]["volumes"])
    assert "./grafana/hookline.json:/var/lib/grafana/dashboards/hookline.json" in grafana
    [provider] = documents(DEPLOY / "grafana" / "provisioning" / "dashboards" / "hookline.yaml")
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
