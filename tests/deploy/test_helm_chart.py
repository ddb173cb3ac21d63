"""The Helm chart: `helm lint`, and `helm template` validated by kubernetes-validate (the
Kubernetes API's own schemas, bundled, strict: unknown fields fail) for the default values and
the production example. The Prometheus Operator's ServiceMonitor/PodMonitor have no schema
there (they are CRDs): kubernetes-validate only warns about them, so they are taken out and
checked here against what they must select (the pods' labels and named ports)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import REPO, venv_tool

CHART = REPO / "deploy" / "helm" / "akave-gateway"
PRODUCTION = REPO / "deploy" / "helm" / "examples" / "production-values.yaml"
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")  # the oldest we support and the newest known
CRD_GROUP = "monitoring.coreos.com/"
VALUES = {"default": [], "production": ["-f", str(PRODUCTION)]}


def render(helm: str, *args: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        [helm, "template", "gw", str(CHART), *args],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    return [doc for doc in yaml.safe_load_all(out) if doc]


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def pod_templates(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        d["metadata"]["name"]: d["spec"]["template"]
        for d in docs
        if d["kind"] in ("Deployment", "Job")
    }


@pytest.mark.parametrize("values", VALUES)
def test_helm_lint(helm: str, values: str) -> None:
    lint = subprocess.run(
        [helm, "lint", "--strict", str(CHART), *VALUES[values]],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert lint.returncode == 0, lint.stdout + lint.stderr


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("values", VALUES)
def test_rendered_manifests_validate(helm: str, tmp_path: Path, values: str, version: str) -> None:
    docs = render(helm, *VALUES[values])
    core = [d for d in docs if not d["apiVersion"].startswith(CRD_GROUP)]
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(yaml.safe_dump_all(core))
    check = subprocess.run(
        [venv_tool("kubernetes-validate"), "--strict", "--quiet", "-k", version, str(manifest)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    assert "WARN" not in check.stdout + check.stderr, check.stdout + check.stderr
    kinds = sorted({d["kind"] for d in core})
    assert kinds == sorted(
        ["Deployment", "HorizontalPodAutoscaler", "Job", "PodDisruptionBudget", "Service",
         "ServiceAccount"] + (["Secret"] if values == "default" else [])
    )  # fmt: skip


def test_kubernetes_validate_rejects_an_unknown_field(tmp_path: Path, helm: str) -> None:
    """The validation above can fail: a misspelt field in a rendered Deployment is refused."""
    docs = render(helm)
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(yaml.safe_dump(deployment))
    check = subprocess.run(
        [venv_tool("kubernetes-validate"), "--strict", "--quiet", str(manifest)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert check.returncode != 0


def test_default_values_make_no_operator_resources(helm: str) -> None:
    assert not [d for d in render(helm) if d["apiVersion"].startswith(CRD_GROUP)]


def test_monitors_select_the_pods_and_ports_that_serve_metrics(helm: str) -> None:
    docs = render(helm, *VALUES["production"])
    service_monitor = by_kind(docs, "ServiceMonitor")["gw-akave-gateway-api"]
    pod_monitor = by_kind(docs, "PodMonitor")["gw-akave-gateway-workers"]
    api_service = by_kind(docs, "Service")["gw-akave-gateway-api"]
    assert service_monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert service_monitor["metadata"]["labels"]["release"] == "prometheus"
    wanted = service_monitor["spec"]["selector"]["matchLabels"]
    assert wanted.items() <= api_service["metadata"]["labels"].items()
    assert [e["port"] for e in service_monitor["spec"]["endpoints"]] == ["http"]
    assert "http" in [p["name"] for p in api_service["spec"]["ports"]]

    templates = pod_templates(docs)
    selector = pod_monitor["spec"]["selector"]
    (expression,) = selector["matchExpressions"]
    scraped = {
        name: t for name, t in templates.items()
        if selector["matchLabels"].items() <= t["metadata"]["labels"].items()
        and t["metadata"]["labels"]["app.kubernetes.io/component"] in expression["values"]
    }  # fmt: skip
    assert sorted(scraped) == [
        f"gw-akave-gateway-{s}" for s in ("executor", "notifier", "projector")
    ]
    (endpoint,) = pod_monitor["spec"]["podMetricsEndpoints"]
    for name, template in scraped.items():
        (container,) = template["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        env = {e["name"]: e.get("value") for e in container["env"]}
        component = template["metadata"]["labels"]["app.kubernetes.io/component"]
        assert env[f"{component.upper()}_METRICS_PORT"] == str(ports[endpoint["port"]]), name
        assert env["METRICS_HOST"] == "0.0.0.0", name


@pytest.mark.parametrize("values", VALUES)
def test_every_container_runs_unprivileged_with_limits(helm: str, values: str) -> None:
    for name, template in pod_templates(render(helm, *VALUES[values])).items():
        pod = template["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] == 10001, name  # the image's USER
        assert pod["automountServiceAccountToken"] is False, name
        for container in pod.get("initContainers", []) + pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert container["resources"]["limits"]["memory"], name
            assert container["resources"]["requests"], name


def test_probes_use_the_endpoints_each_service_serves(helm: str) -> None:
    templates = pod_templates(render(helm))
    api = templates["gw-akave-gateway-api"]["spec"]["containers"][0]
    assert api["readinessProbe"]["httpGet"]["path"] == "/health"  # 503 when db or log is down
    assert api["livenessProbe"]["httpGet"]["path"] == "/openapi.json"  # needs neither
    # A standby executor serves its metrics too (akave_executor_standby 1), so the executor's
    # probes hold for signer and standby alike.
    for service in ("projector", "notifier", "executor"):
        (container,) = templates[f"gw-akave-gateway-{service}"]["spec"]["containers"]
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert container[probe]["httpGet"] == {"path": "/metrics", "port": "metrics"}


def test_executor_replicas_share_one_fenced_key_pool(helm: str) -> None:
    docs = render(helm, *VALUES["production"])
    executor = by_kind(docs, "Deployment")["gw-akave-gateway-executor"]
    pod = executor["spec"]["template"]["spec"]
    assert executor["spec"]["replicas"] == 2
    # the new pod waits as a standby while the old one still holds the locks
    assert executor["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["secret-keys"]["secret"]["secretName"] == "akave-gateway-chain-keys"
    assert volumes["keys"]["emptyDir"]["medium"] == "Memory"
    (init,) = pod["initContainers"]
    assert "install -m 0600 /secret/keys/pool /run/akave-keys/pool" in init["command"][-1]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["CHAIN_KEY_POOL_FILE"] == "/run/akave-keys/pool"
    assert env["AKAVE_BACKEND"] == "evm"
    assert "AKAVE_PRIVATE_KEY" not in env


def test_migration_runs_as_a_hook_before_the_pods(helm: str) -> None:
    docs = render(helm, *VALUES["production"])
    (job,) = by_kind(docs, "Job").values()
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"][-1] == "akave-gateway migrate && akave-gateway topics"
    database = next(e for e in container["env"] if e["name"] == "DATABASE_URL")
    assert database["valueFrom"]["secretKeyRef"] == {"name": "akave-gateway-database", "key": "url"}
    # the hook runs before the chart's own resources exist: it must not need its ServiceAccount
    assert "serviceAccountName" not in job["spec"]["template"]["spec"]
    assert not by_kind(docs, "Secret")  # production: the database Secret is the operator's
