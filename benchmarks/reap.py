"""4. Reaping 2,000 orphans as PID 1 of a new PID namespace, and the zombies left.

`unshare --pid --fork --mount-proc SUPERVISOR -- CHILD`: the child forks a
middle process that forks the orphans and exits, so they are re-parented to
PID 1; they block on a pipe, and closing it makes them all exit. The time is
from that moment until /proc of the namespace is back to its count before
(every orphan reaped), then the zombies left are counted; the CPU used by PID 1
meanwhile comes from /proc/1/sched. Rounds alternate the order of the peers.
"""

from __future__ import annotations

import json
import os
import statistics
from typing import Any

from benchmarks.common import EP, TINI, clean_env, rounded, run_quiet, worker_env
from benchmarks.harness import Context, Measure, Result, Section
from benchmarks.table import Budget, budget, get, table

# Runs as the only child of PID 1 in a new PID namespace. A middle process forks
# the orphans and exits, so they are re-parented to PID 1; they wait on a pipe,
# and all exit when it is closed. Then: how long until /proc is back to what it
# was (every orphan reaped), and how many zombies are left at the end.
REAP_CHILD = """\
import json, os, signal, sys, time

def pids():
    return [name for name in os.listdir("/proc") if name.isdigit()]

def reaper_cpu_ms():
    try:
        with open("/proc/1/sched") as handle:
            for line in handle:
                if line.startswith("se.sum_exec_runtime"):
                    return float(line.split(":")[1])
    except OSError:
        pass
    return -1.0

def zombies():
    count = 0
    for pid in pids():
        try:
            with open("/proc/%s/stat" % pid) as handle:
                count += handle.read().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            pass
    return count

orphans = int(sys.argv[1])
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
before = len(pids())
release_r, release_w = os.pipe()
middle = os.fork()
if middle == 0:
    os.close(release_w)
    for _ in range(orphans):
        if os.fork() == 0:
            os.read(release_r, 1)
            os._exit(0)
    os._exit(0)
os.close(release_r)
os.waitpid(middle, 0)
created = len(pids()) - before
cpu_before = reaper_cpu_ms()
start = time.monotonic()
deadline = start + 20.0
os.close(release_w)
left = created
while left > 0 and time.monotonic() < deadline:
    time.sleep(0.002)  # a listing of /proc costs ~0.5 ms: poll lightly, not to steal the CPU
    left = len(pids()) - before
elapsed = time.monotonic() - start
cpu = reaper_cpu_ms() - cpu_before
with open("/proc/1/comm") as handle:
    pid1 = handle.read().strip()
print(json.dumps({"ms": elapsed * 1000, "created": created, "left": left,
                  "zombies_left": zombies(), "pid1": pid1, "pid1_cpu_ms": cpu}), flush=True)
os.kill(1, signal.SIGTERM)
signal.sigtimedwait({signal.SIGTERM}, 10)
os._exit(0)
"""


def run(ctx: Context) -> dict[str, Result]:
    peers, sizes, tmp = ctx.peers, ctx.sizes, ctx.tmp
    script = tmp / "reap_child.py"
    script.write_text(REAP_CHILD)
    child = [peers.python, "-I", "-S", str(script), str(sizes.orphans)]
    setups: dict[str, tuple[list[str], dict[str, str]] | None] = {
        EP: ([peers.entrypoint, "run", "--", *child], worker_env(tmp, "reap")),
        TINI: ([peers.tini, "--", *child], clean_env()) if peers.tini else None,
    }
    results: dict[str, Any] = dict.fromkeys(setups)
    if peers.unshare is None or os.geteuid() != 0:
        return {"reap": {"orphans": sizes.orphans, "rounds": 0, "results": results}}
    present = [label for label, setup in setups.items() if setup]
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in present}
    for round_ in range(sizes.reap_rounds):
        order = present if round_ % 2 == 0 else present[::-1]
        for label in order:
            setup = setups[label]
            assert setup is not None
            # --kill-child: if unshare is killed (timeout), PID 1 and so the
            # whole namespace go with it.
            argv = [peers.unshare, "--pid", "--fork", "--kill-child", "--mount-proc", *setup[0]]
            result = run_quiet(argv, 90, env=setup[1], start_new_session=True)
            lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
            if not lines:
                raise RuntimeError(f"{label}: no report from the reaping child\n{result.stderr}")
            runs[label].append(json.loads(lines[-1]))
    for label in present:
        reports = runs[label]
        results[label] = {
            "median_ms": rounded(statistics.median(r["ms"] for r in reports)),
            "max_ms": rounded(max(r["ms"] for r in reports)),
            "reaper_cpu_ms": rounded(statistics.median(r["pid1_cpu_ms"] for r in reports)),
            "zombies_left": max(r["zombies_left"] for r in reports),
            "not_reaped": max(r["left"] for r in reports),
            "orphans_created": min(r["created"] for r in reports),
            "pid1": reports[0]["pid1"],
        }
    return {"reap": {"orphans": sizes.orphans, "rounds": sizes.reap_rounds, "results": results}}


def render(r: Result) -> str:
    return table(
        f"4. reaping {r['orphans']} orphans as PID 1 (median of {r['rounds']} rounds, ms)",
        [
            ("median ms", "median_ms"),
            ("max ms", "max_ms"),
            ("PID 1 CPU ms", "reaper_cpu_ms"),
            ("zombies", "zombies_left"),
        ],
        r["results"],
    )


def budgets(r: Result) -> list[Budget]:
    reap, treap = get(r, "results", EP, "median_ms"), get(r, "results", TINI, "median_ms")
    zombies = get(r, "results", EP, "zombies_left")
    return [
        budget(
            "reaping 2,000 orphans",
            "<= 1.2x tini's, 0 zombies",
            reap,
            treap and (1.2 * treap if zombies == 0 else -1.0),
            f"{reap} ms vs {treap} ms ({reap / treap:.2f}x), {zombies} zombies"
            if reap and treap
            else "",
        )
    ]


MEASURE = Measure(
    name="reap",
    title="reaping orphans as PID 1",
    run=run,
    sections=(Section("reap", render, budgets, {"orphans": 0, "rounds": 0, "results": {}}),),
)
