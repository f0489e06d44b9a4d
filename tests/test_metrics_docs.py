"""The metrics docs hold what the code serves: promtool accepts the rules and every query.

- docs/kubernetes/alerts.yaml's `spec` is a Prometheus rules file: `promtool
  check rules` (Debian package `prometheus`) must accept it.
- Every PromQL expression of the Grafana dashboard, and of the KEDA trigger,
  must parse (promtool, as recording rules, with the dashboard's variables
  filled in) and name only series the entrypoint serves.
- Every series the code serves is described in docs/metrics.md.
(The manifests' schemas: tests/test_kubernetes_manifests.py.)
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from entrypoint.runtime.depth import QueueDepth
from entrypoint.runtime.metrics import Snapshot, families
from tests.helpers import ROOT
from tests.servers import missing

DOCS = ROOT / "docs"
KUBERNETES = DOCS / "kubernetes"
SERVED = {
    family.name
    for family in families(
        Snapshot(
            leader=True,
            heartbeat_age_seconds=1,
            child_rss_bytes=1,
            queues=(QueueDepth("rq:x", up=True, ready=1, delayed=1, reserved=1),),
        )
    )
}
SAMPLE_NAMES = {
    name + "_total" if name.endswith(("_starts", "_exits")) else name for name in SERVED
}
RECORDED = {
    "entrypoint:queue_depth:max",
    "entrypoint:queue_delayed:max",
    "entrypoint:queue_reserved:max",
}


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        missing("promtool is not installed (apt-get install prometheus)")
    assert found is not None
    return found


def check_rules(groups: list[dict[str, object]], path: Path) -> subprocess.CompletedProcess[str]:
    path.write_text(yaml.safe_dump({"groups": groups}))
    return subprocess.run(
        [promtool(), "check", "rules", str(path)], capture_output=True, text=True, check=False
    )


def rules_file() -> dict[str, object]:
    doc: dict[str, object] = yaml.safe_load((KUBERNETES / "alerts.yaml").read_text())
    spec = doc["spec"]
    assert isinstance(spec, dict)
    return spec


def names_in(expr: str) -> set[str]:
    """The metric names an expression mentions (entrypoint_* and recorded entrypoint:*)."""
    return set(re.findall(r"\bentrypoint[_:][a-z_:]+[a-z]\b", expr))


def test_promtool_accepts_the_rules(tmp_path: Path) -> None:
    result = check_rules(rules_file()["groups"], tmp_path / "rules.yml")  # type: ignore[arg-type]
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_would_refuse_a_broken_rule(tmp_path: Path) -> None:
    broken: list[dict[str, object]] = [
        {"name": "x", "rules": [{"alert": "X", "expr": "entrypoint_child_up =="}]}
    ]
    assert check_rules(broken, tmp_path / "rules.yml").returncode != 0


def test_the_rules_name_served_series() -> None:
    alerts = set()
    for group in rules_file()["groups"]:  # type: ignore[attr-defined]
        for rule in group["rules"]:
            assert names_in(rule["expr"]) <= SAMPLE_NAMES | RECORDED, rule
            if "alert" in rule:
                alerts.add(rule["alert"])
    # worker down, crash loop, queue growing, heartbeat stale
    assert {
        "EntrypointWorkerDown",
        "EntrypointCrashLooping",
        "EntrypointQueueGrowing",
        "EntrypointHeartbeatStale",
    } <= alerts


def dashboard_queries() -> list[str]:
    dashboard = json.loads((KUBERNETES / "grafana-dashboard.json").read_text())
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert queries
    return queries


def fill_variables(expr: str) -> str:
    return (
        expr.replace("$__rate_interval", "5m")
        .replace("$namespace", ".*")
        .replace("$pod", ".*")
        .replace("$queue", ".*")
    )


def test_the_dashboard_queries_parse_and_name_served_series(tmp_path: Path) -> None:
    queries = dashboard_queries()
    for query in queries:
        assert names_in(query) <= SAMPLE_NAMES, query
        assert names_in(query), query
    keda = yaml.safe_load((KUBERNETES / "keda-scaledobject.yaml").read_text())
    keda_queries = [t["metadata"]["query"] for t in keda["spec"]["triggers"]]
    rules = [
        {"record": f"check:query{i}", "expr": fill_variables(query)}
        for i, query in enumerate([*queries, *keda_queries])
    ]
    result = check_rules([{"name": "dashboard", "rules": rules}], tmp_path / "dashboard.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dashboard_is_importable() -> None:
    dashboard = json.loads((KUBERNETES / "grafana-dashboard.json").read_text())
    assert dashboard["uid"]
    assert dashboard["title"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "namespace", "pod", "queue"} <= variables
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
        assert set(panel["gridPos"]) == {"x", "y", "w", "h"}


@pytest.mark.parametrize("name", sorted(SAMPLE_NAMES))
def test_every_series_is_in_the_docs(name: str) -> None:
    text = (DOCS / "metrics.md").read_text()
    assert re.search(rf"`{name}(\{{[a-z]+\}})?`", text), f"{name} is not in the table"
    assert re.search(rf"^{name}\b", text, re.MULTILINE), f"{name} is not in the example scrape"
