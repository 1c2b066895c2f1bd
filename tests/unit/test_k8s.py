"""deploy/k8s as a platform engineer checks it: it renders, validates, and holds together."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.settings import Settings
from shared.topology import Topology
from tests.support.k8s_render import (
    KUBERNETES_VERSIONS,
    KUSTOMIZATIONS,
    ROOT,
    by_name,
    crd_errors,
    is_custom,
    kubernetes_errors,
    objects,
    rendered,
    typed_parts,
)

SERVICES = ("ingest", "fanout", "sender")
AUTOSCALED = ("overlays/keda", "overlays/hpa", "overlays/reference")
IMAGE = "ghcr.io/hookline/hookline"


def pod_spec(deployment: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


def config(kustomization: str) -> dict[str, str]:
    [configmap] = objects(kustomization, "ConfigMap")
    data: dict[str, str] = configmap["data"]
    return data


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_renders_and_every_object_validates(kustomization: str) -> None:
    """Kubernetes objects against the schemas of each version; custom resources against
    ours (tests/unit/crd_schemas), their Kubernetes-typed parts against Kubernetes'."""
    errors = []
    for obj in rendered(kustomization):
        kubernetes_objects = typed_parts(obj) if is_custom(obj) else [obj]
        if is_custom(obj):
            errors += [f"{obj['kind']}/{obj['metadata']['name']}: {e}" for e in crd_errors(obj)]
        for version in KUBERNETES_VERSIONS:
            errors += filter(None, (kubernetes_errors(o, version) for o in kubernetes_objects))
    assert not errors, "\n".join(errors)


def test_the_crd_schemas_catch_a_mistake() -> None:
    """Our schemas are not permissive: a typo and a wrong value are both reported."""
    [scaled, *_] = objects("overlays/keda", "ScaledObject")
    broken = yaml.safe_load(yaml.safe_dump(scaled))
    broken["spec"]["minReplicas"] = 2
    broken["spec"]["triggers"][0]["metadata"]["mode"] = "QueueDepth"
    found = " ".join(crd_errors(broken))
    assert "minReplicas" in found and "QueueDepth" in found


@pytest.mark.parametrize("kustomization", AUTOSCALED)
def test_one_autoscaler_per_service_and_no_replicas_beside_it(kustomization: str) -> None:
    targets = [s["spec"]["scaleTargetRef"]["name"] for s in objects(kustomization, "ScaledObject")]
    targets += [
        h["spec"]["scaleTargetRef"]["name"]
        for h in objects(kustomization, "HorizontalPodAutoscaler")
    ]
    assert sorted(targets) == sorted(f"hookline-{s}" for s in SERVICES)
    for deployment in objects(kustomization, "Deployment"):
        assert "replicas" not in deployment["spec"], deployment["metadata"]["name"]
    for scaler in objects(kustomization, "ScaledObject"):
        spec = scaler["spec"]
        assert 2 <= spec["minReplicaCount"] < spec["maxReplicaCount"]
        down = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
        assert down["stabilizationWindowSeconds"] >= 300
    for hpa in objects(kustomization, "HorizontalPodAutoscaler"):
        assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]


def test_keda_scales_each_service_on_its_own_queue() -> None:
    settings = Settings(namespace=config("overlays/keda")["HOOKLINE_NAMESPACE"])
    topology = Topology(settings.namespace, settings.retry_delays)
    queues = {
        "hookline-ingest": topology.ingest_queue.name,
        "hookline-fanout": topology.fanout_queue.name,
        "hookline-sender": topology.deliveries_queue.name,
    }
    [auth] = objects("overlays/keda", "TriggerAuthentication")
    [ref] = auth["spec"]["secretTargetRef"]
    example = yaml.safe_load((ROOT / "deploy/k8s/base/secret.example.yaml").read_text())
    assert ref["name"] == example["metadata"]["name"] and ref["key"] in example["stringData"]
    for scaler in objects("overlays/keda", "ScaledObject"):
        [rabbitmq] = [t for t in scaler["spec"]["triggers"] if t["type"] == "rabbitmq"]
        name = scaler["spec"]["scaleTargetRef"]["name"]
        assert rabbitmq["metadata"]["queueName"] == queues[name]
        assert rabbitmq["authenticationRef"]["name"] == auth["metadata"]["name"]


@pytest.mark.parametrize("service", SERVICES)
def test_each_pod_migrates_first_and_runs_without_a_token(service: str) -> None:
    deployment = by_name("overlays/keda", "Deployment")[f"hookline-{service}"]
    spec = pod_spec(deployment)
    [sa] = objects("overlays/keda", "ServiceAccount")
    assert spec["serviceAccountName"] == sa["metadata"]["name"]
    assert spec["automountServiceAccountToken"] is False
    assert sa["automountServiceAccountToken"] is False
    [migrate] = spec["initContainers"]
    [container] = spec["containers"]
    assert migrate["args"][:2] == ["migrate", "--wait"]
    assert migrate["image"] == container["image"]
    assert migrate["envFrom"] == container["envFrom"]
    assert container["startupProbe"]["httpGet"]["port"] == "metrics"
    keys = {c["topologyKey"] for c in spec["topologySpreadConstraints"]}
    assert keys == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    for constraint in spec["topologySpreadConstraints"]:
        assert constraint["labelSelector"]["matchLabels"].items() <= labels.items()


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_hookline_image_is_the_pinned_one(kustomization: str) -> None:
    [kustomize] = yaml.safe_load_all((ROOT / "deploy/k8s/base/kustomization.yaml").read_text())
    [pin] = [i for i in kustomize["images"] if i["name"] == IMAGE]
    expected = f"{IMAGE}@{pin['digest']}" if "digest" in pin else f"{IMAGE}:{pin['newTag']}"
    for deployment in objects(kustomization, "Deployment"):
        spec = pod_spec(deployment)
        for container in spec["containers"] + spec["initContainers"]:
            assert container["image"] == expected


def _public_ranges() -> tuple[set[str], list[ipaddress.IPv4Network | ipaddress.IPv6Network]]:
    """The CIDRs of the sender's public egress rule, and the ranges it leaves out."""
    [policy] = [
        p
        for p in objects("base", "NetworkPolicy")
        if p["metadata"]["name"] == "hookline-sender-public-egress"
    ]
    [rule] = policy["spec"]["egress"]
    cidrs = {b["ipBlock"]["cidr"] for b in rule["to"]}
    return cidrs, [ipaddress.ip_network(n) for b in rule["to"] for n in b["ipBlock"]["except"]]


def test_the_sender_reaches_only_public_networks_and_the_allowed_ones() -> None:
    """The network backs the SSRF guard: every private range the guard refuses is left out
    of the sender's egress, and no other policy lets the sender reach an address range
    beyond HOOKLINE_ALLOWED_TARGET_NETWORKS."""
    cidrs, excluded = _public_ranges()
    assert cidrs == {"0.0.0.0/0", "::/0"}
    for private in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"):
        assert ipaddress.ip_network(private) in excluded
    assert ipaddress.ip_network("fc00::/7") in excluded
    allowed = Settings(
        allowed_target_networks=config("base")["HOOKLINE_ALLOWED_TARGET_NETWORKS"]
    ).allowed_target_networks
    sender = by_name("base", "Deployment")["hookline-sender"]
    labels = sender["spec"]["template"]["metadata"]["labels"]
    others = set()
    for policy in objects("base", "NetworkPolicy"):
        if policy["metadata"]["name"] == "hookline-sender-public-egress":
            continue
        if not policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items():
            continue
        for rule in policy["spec"].get("egress", []):
            others |= {p["ipBlock"]["cidr"] for p in rule.get("to", []) if "ipBlock" in p}
    assert {ipaddress.ip_network(c) for c in others} <= set(allowed)


def test_network_policies_open_only_the_api_and_metrics_ports() -> None:
    opened = {
        port["port"]
        for policy in objects("base", "NetworkPolicy")
        for rule in policy["spec"].get("ingress", [])
        for port in rule["ports"]
    }
    assert opened == {"api", "metrics"}
    names = {
        p["name"]
        for d in objects("base", "Deployment")
        for c in pod_spec(d)["containers"]
        for p in c["ports"]
    }
    assert opened <= names
    [deny] = [
        p
        for p in objects("base", "NetworkPolicy")
        if "ingress" not in p["spec"] and "egress" not in p["spec"]
    ]
    assert set(deny["spec"]["policyTypes"]) == {"Ingress", "Egress"}


def test_pod_monitors_scrape_each_service_on_its_metrics_port() -> None:
    monitors = objects("overlays/keda", "PodMonitor")
    for name, deployment in by_name("overlays/keda", "Deployment").items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        [monitor] = [
            m for m in monitors if m["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ]
        assert [e["port"] for e in monitor["spec"]["podMetricsEndpoints"]] == ["metrics"], name
        assert "app.kubernetes.io/part-of" in monitor["spec"]["podTargetLabels"]


def test_the_prometheus_rule_is_the_alerts_file() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("gen", ROOT / "scripts/prometheusrule.py")
    assert spec is not None and spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    path: Path = generator.RULE
    assert path.read_text() == generator.render(), "run `python scripts/prometheusrule.py`"
    [rule] = objects("overlays/keda", "PrometheusRule")
    alerts = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yaml").read_text())
    assert rule["spec"]["groups"] == alerts["groups"]


def test_the_reference_backends_are_clustered_and_hookline_uses_quorum_queues() -> None:
    assert config("overlays/reference")["HOOKLINE_QUEUE_TYPE"] == "quorum"
    assert "HOOKLINE_QUEUE_TYPE" not in config("overlays/keda")
    [rabbit] = objects("overlays/reference", "RabbitmqCluster")
    assert rabbit["spec"]["replicas"] == 3
    assert "rabbitmq_prometheus" in rabbit["spec"]["rabbitmq"]["additionalPlugins"]
    [cluster] = objects("overlays/reference", "Cluster")
    [pooler] = objects("overlays/reference", "Pooler")
    assert pooler["spec"]["cluster"]["name"] == cluster["metadata"]["name"]
    # LISTEN (the caches) and advisory locks (migrator, sampler) need session pooling.
    assert pooler["spec"]["pgbouncer"]["poolMode"] == "session"
    servers = pooler["spec"]["instances"] * int(
        pooler["spec"]["pgbouncer"]["parameters"]["default_pool_size"]
    )
    assert servers < int(cluster["spec"]["postgresql"]["parameters"]["max_connections"])


def test_the_reference_overlay_lets_hookline_reach_only_its_own_backends() -> None:
    [policy] = [
        p
        for p in objects("overlays/reference", "NetworkPolicy")
        if p["metadata"]["name"] == "hookline-allow-backends"
    ]
    [rabbit] = objects("overlays/reference", "RabbitmqCluster")
    [pooler] = objects("overlays/reference", "Pooler")
    targets = {}
    for rule in policy["spec"]["egress"]:
        ports = tuple(p["port"] for p in rule["ports"])
        assert "to" in rule, f"egress to any address on {ports}"
        for peer in rule["to"]:
            targets[ports] = peer.get("podSelector", {}).get("matchLabels", {})
    assert targets[(5672,)] == {"app.kubernetes.io/name": rabbit["metadata"]["name"]}
    assert targets[(5432,)] == {"cnpg.io/poolerName": pooler["metadata"]["name"]}
