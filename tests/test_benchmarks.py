"""Smoke test of benchmarks/run.py: a --quick run prints every figure and writes every key.

The figures themselves are not asserted (they are targets, not timed tests); what
is checked is that the script measures every peer, reports every budget, and
leaves no process behind.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.servers import missing, require_server

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "run.py"

# section -> (heading printed, {label: keys of its row})
SECTIONS: dict[str, tuple[str, dict[str, tuple[str, ...]]]] = {
    "web": (
        "1. start to exec",
        dict.fromkeys(
            ("entrypoint", "python3 -c pass", "tini", "dumb-init", "sh -c true"),
            ("median_ms", "p90_ms", "vs_python"),
        ),
    ),
    "signal": (
        "2. signal forwarding",
        dict.fromkeys(
            ("entrypoint", "entrypoint (log warning)", "tini", "dumb-init"),
            ("p50_us", "p90_us", "p99_us", "max_us"),
        ),
    ),
    "idle": (
        "3. idle supervising process",
        dict.fromkeys(
            (
                "entrypoint",
                "entrypoint (+ Redis dep.)",
                "entrypoint (MAX_RSS, 5 s)",
                "tini",
                "dumb-init",
                "supervisord",
                "honcho",
            ),
            ("voluntary_switches", "involuntary_switches", "cpu_ms", "rss_mb"),
        ),
    ),
    "reap": (
        "4. reaping",
        dict.fromkeys(
            ("entrypoint", "tini"),
            ("median_ms", "max_ms", "reaper_cpu_ms", "zombies_left", "orphans_created"),
        ),
    ),
    "restart": (
        "5. restart after a clean exit",
        dict.fromkeys(("entrypoint", "supervisord"), ("median_ms", "p90_ms", "samples")),
    ),
    "cli": (
        "6. CLI with one Redis dependency",
        dict.fromkeys(
            ("entrypoint health", "entrypoint check", "python3 -c pass"),
            ("median_ms", "p90_ms", "max_rss_mb", "exit_codes"),
        ),
    ),
}
BUDGETS = (
    "web overhead",
    "signal latency p50",
    "signal latency p99",
    "idle wakeups",
    "supervising RSS",
    "reaping 2,000 orphans",
    "restart after a clean exit",
    "entrypoint health",
)


def leftovers() -> list[str]:
    """Command lines of processes still running from a benchmark's temporary directory."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as handle:
                    cmdline = handle.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if "entrypoint-bench-" in cmdline:
                found.append(f"{entry}: {cmdline}")
    return found


@pytest.mark.timeout(300)  # a first run on a new machine also apt-gets the peers
def test_quick_run_prints_every_figure_and_writes_every_key(tmp_path: Path) -> None:
    require_server("redis")
    if os.geteuid() != 0 or not shutil.which("unshare"):
        missing("the reaping benchmark needs root and unshare (a new PID namespace)")
    output = tmp_path / "bench.json"
    env = {name: value for name, value in os.environ.items() if not name.startswith("ENTRYPOINT_")}
    try:
        result = subprocess.run(
            [sys.executable, str(SCRIPT), "--quick", "--json", str(output)],
            capture_output=True,
            text=True,
            timeout=280,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"benchmarks/run.py --quick did not finish in 280 s:\n{exc.stderr!r}")
    assert result.returncode == 0, result.stderr[-4000:]
    assert not leftovers(), leftovers()
    data: dict[str, Any] = json.loads(output.read_text())
    if data["meta"]["missing"]:
        missing("benchmark peers unavailable: " + "; ".join(data["meta"]["missing"]))

    table = result.stdout
    for section, (heading, rows) in SECTIONS.items():
        assert heading in table, f"{heading!r} not printed"
        results = data[section]["results"]
        for label, keys in rows.items():
            assert any(line.strip().startswith(label) for line in table.splitlines()), label
            row = results[label]
            assert row is not None, f"{section}: no figures for {label}"
            for key in keys:
                assert row.get(key) is not None, f"{section}/{label}: {key} missing"
    assert data["cli"]["results"]["entrypoint health"]["exit_codes"] == [0]
    assert data["cli"]["results"]["entrypoint check"]["exit_codes"] == [0]
    assert data["reap"]["results"]["entrypoint"]["orphans_created"] == 2000

    budgets = {budget["name"]: budget for budget in data["budgets"]}
    assert set(budgets) == set(BUDGETS)
    for name, budget in budgets.items():
        assert isinstance(budget["met"], bool), f"budget {name} was not measured"
        verdict = "met" if budget["met"] else "MISSED"
        assert any(line.split()[:1] == [verdict] and name in line for line in table.splitlines()), (
            f"budget {name} not printed as {verdict}"
        )
    assert len(data["restart_policies"]["Docker restart=always"]) == 10
