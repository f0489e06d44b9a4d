"""Smoke test of benchmarks/run.py: a --quick run prints every figure and writes every key.

The figures themselves are not asserted (they are targets, not timed tests); what
is checked is that the script measures every peer and every measure, reports
every budget, and leaves no process behind.
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

CLI_KEYS = (
    "median_ms",
    "p90_ms",
    "p95_ms",
    "cpu_median_ms",
    "cpu_p95_ms",
    "max_rss_mb",
    "exit_codes",
)
IDLE_KEYS = ("voluntary_switches", "involuntary_switches", "cpu_ms", "rss_mb")
IMPORT_KEYS = ("modules", "self_ms", "own_modules", "own_self_ms", "heaviest", "by_package")
MEMORY_WAYS = ("group_rss", "stat + statm", "statm of the members", "open().read() stat")

# section -> (heading printed, {label: keys of its row})
SECTIONS: dict[str, tuple[str, dict[str, tuple[str, ...]]]] = {
    "web": (
        "1. start to exec",
        dict.fromkeys(
            (
                "entrypoint",
                "entrypoint MODE=web",
                "entrypoint MODE=web, image env",
                "python3 -c pass",
                "tini",
                "dumb-init",
                "sh -c true",
            ),
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
        {
            **dict.fromkeys(
                (
                    "entrypoint",
                    "entrypoint (+ Redis dep.)",
                    "tini",
                    "dumb-init",
                    "supervisord",
                    "honcho",
                ),
                IDLE_KEYS,
            ),
            "entrypoint (notify, 1 s watchdog)": (*IDLE_KEYS, "heartbeats"),
            "entrypoint (notify, state on tmpfs)": (*IDLE_KEYS, "heartbeats"),
            "entrypoint (MAX_RSS, 5 s)": (
                *IDLE_KEYS,
                "wakeups_per_minute",
                "cpu_ms_per_minute",
                "samples_due",
            ),
            "entrypoint (metrics on)": (*IDLE_KEYS, "rss_vs_off_mb"),
        },
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
            (
                "entrypoint health",
                "entrypoint health --ready",
                "entrypoint check",
                "python3 -c pass",
            ),
            CLI_KEYS,
        ),
    ),
    "worker_start": (
        "7. worker start to child_started",
        dict.fromkeys(
            ("entrypoint worker, Redis dep.", "entrypoint worker, no dep.", "python3 -c pass"),
            ("median_ms", "p90_ms", "max_ms"),
        ),
    ),
    "memory_sample": (
        "8. one ENTRYPOINT_MAX_RSS sample",
        dict.fromkeys(
            ("1 processes", "20 processes", "200 processes", "20 processes x 50 threads"),
            ("processes_in_proc", "cpu_ms_per_minute", *MEMORY_WAYS),
        ),
    ),
    "metrics": (
        "9. metrics",
        dict.fromkeys(
            ("without queue depth", "with 3 queue depths (Redis, no cache)"),
            ("p50_ms", "p99_ms", "scrapes"),
        ),
    ),
}
# section -> (keys of its result beside the rows, the labels its -X importtime covers)
EXTRA: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "web": (
        ("samples", "image_env", "launcher"),
        ("entrypoint MODE=web", "entrypoint MODE=web, image env"),
    ),
    "idle": (("seconds", "scrape"), ()),
    "cli": (("samples", "against"), ("entrypoint health", "entrypoint health --ready")),
    "worker_start": (
        ("samples", "queue_url"),
        ("entrypoint worker, Redis dep.", "entrypoint worker, no dep."),
    ),
    "memory_sample": (("samples", "pid_namespace", "interval_s", "wakeups_per_minute"), ()),
    "metrics": (
        ("import_ms_best", "import_ms_median", "rss_off_mib", "rss_on_mib", "rss_added_mib"),
        (),
    ),
}
PRINTED = (
    "-X importtime, entrypoint MODE=web:",
    "-X importtime, entrypoint MODE=web, image env:",
    "console script written by pip",
    "notify, state file on disk:",
    "notify, on tmpfs:",
    "MAX_RSS every 5 s:",
    "metrics: RSS",
    "-X importtime, entrypoint health:",
    "-X importtime, entrypoint worker, Redis dep.:",
    "heaviest modules:",
    "import of prometheus_client",
)
BUDGETS = (
    "web overhead",
    "web start, MODE=web bare env",
    "web start, MODE=web image env",
    "signal latency p50",
    "signal latency p99",
    "idle wakeups",
    "supervising RSS",
    "idle wakeups, notify + watchdog",
    "idle wakeups, MAX_RSS",
    "idle wakeups, metrics on",
    "reaping 2,000 orphans",
    "restart after a clean exit",
    "entrypoint health",
    "health p95 wall",
    "health p95 CPU",
    "health --ready p95 wall",
    "health --ready p95 CPU",
)
# Counted when the optional bundle measure ran (its image is there: .ci/docker-up).
BUNDLE_BUDGETS = (
    "bundle size",
    "bundle web start (fast path)",
    "bundle web start (full path)",
    "bundle supervisor RSS",
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
    lines = table.splitlines()
    for section, (heading, rows) in SECTIONS.items():
        assert heading in table, f"{heading!r} not printed"
        results = data[section]["results"]
        for label, keys in rows.items():
            assert any(line.strip().startswith(label) for line in lines), label
            row = results[label]
            assert row is not None, f"{section}: no figures for {label}"
            for key in keys:
                assert row.get(key) is not None, f"{section}/{label}: {key} missing"
    for section, (keys, imported) in EXTRA.items():
        for key in keys:
            assert data[section].get(key) is not None, f"{section}: {key} missing"
        for label in imported:
            found = data[section]["importtime"][label]
            for key in IMPORT_KEYS:
                assert found.get(key) is not None, f"{section}/importtime/{label}: {key} missing"
    for text in PRINTED:
        assert text in table, f"{text!r} not printed"
    assert data["idle"]["scrape"]["p99_ms"] is not None
    assert isinstance(data["web"]["launcher"]["console_script_imports_re"], bool)
    for command in ("entrypoint health", "entrypoint health --ready", "entrypoint check"):
        assert data["cli"]["results"][command]["exit_codes"] == [0], command
    assert data["reap"]["results"]["entrypoint"]["orphans_created"] == 2000

    budgets = {budget["name"]: budget for budget in data["budgets"]}
    bundle_ran = "size_mb" in data.get("bundle", {})
    assert set(budgets) == set(BUDGETS) | (set(BUNDLE_BUDGETS) if bundle_ran else set())
    for name, budget in budgets.items():
        assert isinstance(budget["met"], bool), f"budget {name} was not measured"
        verdict = "met" if budget["met"] else "MISSED"
        assert any(line.split()[:1] == [verdict] and f" {name} " in f"{line} " for line in lines), (
            f"budget {name} not printed as {verdict}"
        )
    assert len(data["restart_policies"]["Docker restart=always"]) == 10
    assert data["meta"]["pip"].startswith("pip ")


def test_a_skipped_optional_measure_counts_no_budget() -> None:
    # Where the bundle's image is missing (no Docker engine), its section keeps
    # its empty result: its budgets are not counted, and asking them fails.
    from benchmarks.runner import all_sections, measured_budgets

    sections = all_sections({"bundle": {}})
    results = {section.key: dict(section.empty) for section in sections}
    bundle = next(section for section in sections if section.key == "bundle")
    with pytest.raises(KeyError):
        bundle.budgets(results["bundle"])
    assert measured_budgets(sections, results, ran=set()) == []
