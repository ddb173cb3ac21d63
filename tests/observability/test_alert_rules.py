"""The alert rules and the Grafana dashboard in deploy/: promtool's unit tests pass, and every
metric a rule or a panel names is one shared/metrics.py defines (so none watches a metric no
service exports), and every defined metric has a panel and a line in docs/operations.md."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

from shared import metrics
from tests.support.stack import REPO

PROMETHEUS = REPO / "deploy" / "prometheus"
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "akave-gateway.json"
# Series Prometheus itself makes for every scrape target.
SCRAPE_SERIES = {"up"}
PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "by", "without", "and", "or", "unless", "on",
    "ignoring", "group_left", "group_right", "bool", "rate", "increase", "delta", "deriv",
    "irate", "histogram_quantile", "max_over_time", "min_over_time", "avg_over_time", "topk",
    "abs", "clamp_min", "time", "timestamp", "e",
}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: what is left once strings, label
    matchers, ranges, grouping clauses, numbers and PromQL's own words are taken out."""
    bare = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", bare)
    bare = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", " ", bare)
    words = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", re.sub(r"\b\d[\d.e+]*\b", " ", bare)))
    return words - PROMQL_WORDS


def rule_exprs() -> dict[str, str]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    return {rule["alert"]: rule["expr"] for group in groups for rule in group["rules"]}


def panel_exprs() -> dict[str, list[str]]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return {
        p["title"]: [t["expr"] for t in p.get("targets", [])] for p in panels if p["type"] != "row"
    }


def test_metric_names_finds_the_selected_metrics() -> None:
    expr = 'sum by (le, route) (rate(akave_x_bucket{status=~"5.."}[5m])) / up > 0.5e2'
    assert metric_names(expr) == {"akave_x_bucket", "up"}


def test_every_rule_names_only_defined_metrics() -> None:
    known = metrics.defined_series() | SCRAPE_SERIES
    for alert, expr in rule_exprs().items():
        names = metric_names(expr)
        assert names, alert
        assert names <= known, f"{alert} names undefined metrics {names - known}"


def test_every_panel_names_only_defined_metrics() -> None:
    known = metrics.defined_series() | SCRAPE_SERIES
    for title, exprs in panel_exprs().items():
        assert exprs, title
        for expr in exprs:
            names = metric_names(expr)
            assert names and names <= known, f"panel {title!r}: {names - known} undefined"


def test_every_defined_metric_has_a_panel_and_is_documented() -> None:
    used = {name for exprs in panel_exprs().values() for e in exprs for name in metric_names(e)}
    operations = (REPO / "docs" / "operations.md").read_text()
    for metric in metrics.ALL:
        assert metric.series() & used, f"no panel shows {metric.name}"
        assert f"`{metric.name}" in operations, f"docs/operations.md does not list {metric.name}"
    for alert in rule_exprs():
        assert f"`{alert}`" in operations, f"docs/operations.md does not explain {alert}"


@pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="needs promtool from Debian's prometheus package (apt-get install prometheus)",
)
def test_promtool_checks_the_rules_and_their_unit_tests_pass() -> None:
    for args in (
        ["check", "rules", "alerts.yml"],
        ["check", "config", "prometheus.yml"],
        ["test", "rules", "alerts_test.yml"],
    ):
        done = subprocess.run(
            ["promtool", *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, f"promtool {' '.join(args)}:\n{done.stdout}{done.stderr}"


def test_the_unit_tests_cover_every_alert() -> None:
    tests = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())["tests"]
    tested = {case["alertname"] for t in tests for case in t.get("alert_rule_test", [])}
    assert tested == set(rule_exprs())


def test_grafana_provisioning_points_at_the_dashboard_folder() -> None:
    provider = yaml.safe_load(
        (REPO / "deploy/grafana/provisioning/dashboards/akave.yml").read_text()
    )["providers"][0]
    assert provider["type"] == "file"
    source = yaml.safe_load(
        (REPO / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"][0]
    uids = {p["datasource"]["uid"] for p in json.loads(DASHBOARD.read_text())["panels"]
            if "datasource" in p}  # fmt: skip
    assert uids == {source["uid"]}
