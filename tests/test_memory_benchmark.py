"""Smoke test of benchmarks/memory_sample.py: a short run reports every group and every way.

The figures are not asserted (they are measured, not timed tests); what is checked
is that the script still runs and measures every case.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "memory_sample.py"
GROUPS = ("1 processes", "20 processes", "200 processes", "20 processes x 50 threads")
WAYS = ("group_rss", "stat + statm", "statm of the members", "open().read() stat")


def test_a_short_run_measures_every_case(tmp_path: Path) -> None:
    out = tmp_path / "sample.json"
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--samples", "3", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "12 wakeups per minute" in run.stdout
    results = json.loads(out.read_text())
    assert tuple(results) == GROUPS
    for row in results.values():
        assert row["processes_in_proc"] >= 1
        for way in WAYS:
            assert row[way]["cpu_ms_mean"] >= 0
