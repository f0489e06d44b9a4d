"""6. The CLI: `entrypoint health`, `health --ready` and `check`, wall and CPU time, peak RSS.

Then `python -X importtime` of `health` and `health --ready`: what their
start costs beyond the interpreter's.

Run while a supervised worker (with one Redis dependency, when Redis answers)
is up, against its state file: the idle measure (idle.py) calls `measure`
after its window, with that worker's environment. Each command is run by a
small launcher that forks, execs it and reports wall time, `ru_maxrss` and the
CPU time (`ru_utime + ru_stime`) from `wait4`, round-robin with `python3 -c
pass` and `true`. (ru_maxrss survives exec, so a command spawned from a big
process reports that process's size: the `true` row shows the floor this
launcher leaves.)
"""

from __future__ import annotations

import shutil
import statistics
from collections.abc import Mapping
from typing import Any

from benchmarks import imports, web
from benchmarks.common import PY, REDIS_URL, percentile, rounded, run_quiet
from benchmarks.harness import Context, Result, Section
from benchmarks.table import Budget, budget, get, table

HEALTH = "entrypoint health"
READY = "entrypoint health --ready"
CHECK = "entrypoint check"
TRUE = "true (floor of the RSS figure)"

# Runs one command and reports "wall_ns exit_code maxrss_kb cpu_ns".
LAUNCHER = """\
import os, sys, time
null = os.open(os.devnull, os.O_RDWR)
start = time.perf_counter_ns()
pid = os.fork()
if pid == 0:
    try:
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.execv(sys.argv[1], sys.argv[1:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
elapsed = time.perf_counter_ns() - start
cpu = int((usage.ru_utime + usage.ru_stime) * 1e9)
print(elapsed, os.waitstatus_to_exitcode(status), usage.ru_maxrss, cpu)
"""


def launch(
    launcher: list[str], argv: list[str], env: Mapping[str, str]
) -> tuple[float, int, float, float]:
    """(wall ms, exit code, peak RSS MB, CPU ms) of argv, run by the small launcher."""
    result = run_quiet([*launcher, *argv], 60, env=dict(env))
    try:
        elapsed, code, maxrss, cpu = map(int, result.stdout.split())
    except ValueError:
        raise RuntimeError(f"the launcher failed on {argv}:\n{result.stderr[-2000:]}") from None
    return elapsed / 1e6, code, maxrss / 1024, cpu / 1e6


def measure(ctx: Context, env: Mapping[str, str], against: str) -> Result:
    """`health` and `health --ready` against the running worker's state file; `check` probes."""
    peers = ctx.peers
    script = ctx.tmp / "launcher.py"
    script.write_text(LAUNCHER)
    launcher = [peers.python, "-I", "-S", str(script)]
    commands = {
        HEALTH: [peers.entrypoint, "health"],
        READY: [peers.entrypoint, "health", "--ready"],
        CHECK: [peers.entrypoint, "check", "--", "rq", "worker"],
        PY: [peers.python, "-c", "pass"],
        TRUE: [shutil.which("true") or "/bin/true"],
    }
    samples: dict[str, list[tuple[float, int, float, float]]] = {label: [] for label in commands}
    labels = list(commands)
    for round_ in range(1 + ctx.sizes.cli_samples):
        shift = round_ % len(labels)
        for label in labels[shift:] + labels[:shift]:
            measured = launch(launcher, commands[label], env)
            if round_:
                samples[label].append(measured)
    results: dict[str, Any] = {}
    for label, runs in samples.items():
        walls, cpus = [r[0] for r in runs], [r[3] for r in runs]
        results[label] = {
            "median_ms": rounded(statistics.median(walls)),
            "p90_ms": rounded(percentile(walls, 90)),
            "p95_ms": rounded(percentile(walls, 95)),
            "cpu_median_ms": rounded(statistics.median(cpus)),
            "cpu_p95_ms": rounded(percentile(cpus, 95)),
            "max_rss_mb": rounded(statistics.median(r[2] for r in runs), 1),
            "exit_codes": sorted({r[1] for r in runs}),
        }
    importtime = {}
    for label in (HEALTH, READY):
        lines = [
            web.importtime_lines(peers.python, commands[label], dict(env), codes=(0, 1))
            for _ in range(ctx.sizes.importtime_runs)
        ]
        parsed = [imports.parse(one) for one in lines]
        importtime[label] = imports.median_run(parsed, imports.installed(peers.python))
    return {
        "samples": ctx.sizes.cli_samples,
        "queue_url": REDIS_URL,
        "against": against,
        "results": results,
        "importtime": importtime,
    }


def render(r: Result) -> str:
    text = table(
        f"6. CLI with one Redis dependency (median of {r['samples']})",
        [
            ("median ms", "median_ms"),
            ("p90 ms", "p90_ms"),
            ("p95 ms", "p95_ms"),
            ("CPU p50 ms", "cpu_median_ms"),
            ("CPU p95 ms", "cpu_p95_ms"),
            ("max RSS MB", "max_rss_mb"),
        ],
        r["results"],
    )
    if r.get("against"):
        text += f"\n  (health and --ready read the state file of: {r['against']})"
    for label, found in r.get("importtime", {}).items():
        text += "\n" + imports.line(f"-X importtime, {label}", found)
    return text


def budgets(r: Result) -> list[Budget]:
    found = []
    health = get(r, "results", HEALTH, "median_ms")
    found.append(budget("entrypoint health", "< 100 ms", health, 99.999, f"{health} ms"))
    for name, label in (("health", HEALTH), ("health --ready", READY)):
        wall = get(r, "results", label, "p95_ms")
        cpu = get(r, "results", label, "cpu_p95_ms")
        found.append(budget(f"{name} p95 wall", "< 50 ms", wall, 49.999, f"{wall} ms"))
        found.append(budget(f"{name} p95 CPU", "< 30 ms", cpu, 29.999, f"{cpu} ms"))
    return found


SECTION = Section("cli", render, budgets, {"samples": 0, "results": {}})
