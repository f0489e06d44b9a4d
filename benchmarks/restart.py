"""5. Restart after a clean exit: the child's exit to the next child's first line.

Both supervisors (the entrypoint with ENTRYPOINT_MIN_UPTIME=0, supervisord with
`autorestart=true`, `startsecs=0`) run at once a child that writes "start" on
its first line, lives a little, writes "exit" and exits 0; the figure is the
next start minus the last exit. The child's own start (interpreter up to its
first line) is measured alone: it is part of every figure, whoever supervises.
"""

from __future__ import annotations

import select
import statistics
import time
from typing import Any

from benchmarks.common import (
    EP,
    SUPD,
    Fifo,
    clean_env,
    percentile,
    rounded,
    spawn_wait,
    supervisord_conf,
    worker_env,
)
from benchmarks.harness import Context, Measure, Result, Section
from benchmarks.table import Budget, budget, get, table

RESTART_CHILD = """\
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY)
os.write(fd, b"start %d\\n" % time.monotonic_ns())
time.sleep(float(sys.argv[2]))
os.write(fd, b"exit %d\\n" % time.monotonic_ns())
os._exit(0)
"""


def run(ctx: Context) -> dict[str, Result]:
    peers, sizes, tmp, procs = ctx.peers, ctx.sizes, ctx.tmp, ctx.procs
    path = tmp / "restart_child.py"
    path.write_text(RESTART_CHILD)
    script = str(path)
    lifetime = str(sizes.child_lifetime)
    alone = Fifo(tmp / "restart-alone.fifo")
    own_start: list[float] = []
    try:
        for _ in range(10):
            sent = time.monotonic_ns()
            spawn_wait([peers.python, "-I", "-S", script, str(alone.path), "0"], {})
            line = alone.readline(5)
            own_start.append((int(line.split()[1]) - sent) / 1e6)
            alone.drain()
    finally:
        alone.close()
    fifos: dict[str, Fifo] = {}
    wanted: dict[str, int] = {}
    setups: dict[str, tuple[list[str], dict[str, str]]] = {}
    fifos[EP] = Fifo(tmp / "restart-ep.fifo")
    child = [peers.python, "-I", "-S", script, str(fifos[EP].path), lifetime]
    setups[EP] = (
        [peers.entrypoint, "run", "--", *child],
        worker_env(tmp, "restart", ENTRYPOINT_MIN_UPTIME="0"),
    )
    wanted[EP] = sizes.restarts
    if peers.supervisord:
        fifos[SUPD] = Fifo(tmp / "restart-supervisord.fifo")
        command = f"{peers.python} -I -S {script} {fifos[SUPD].path} {lifetime}"
        setups[SUPD] = (
            [peers.supervisord, "-c", str(supervisord_conf(tmp, "restart", command))],
            clean_env(),
        )
        wanted[SUPD] = sizes.supervisord_restarts
    samples: dict[str, list[float]] = {label: [] for label in setups}
    last_exit: dict[str, int | None] = dict.fromkeys(setups)
    try:
        # Both run at once: the machine's state is the same for both.
        for label, (argv, env) in setups.items():
            procs.start(f"restart {label}", argv, env)
        deadline = time.monotonic() + 15 + 1.5 * max(wanted.values()) * (1 + sizes.child_lifetime)
        while any(len(samples[label]) < wanted[label] for label in setups):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            select.select(list(fifos.values()), [], [], min(left, 1.0))
            for label, fifo in fifos.items():
                for line in fifo.drain():
                    kind, stamp = line.split()
                    if kind == "exit":
                        last_exit[label] = int(stamp)
                    elif (exited := last_exit[label]) is not None:
                        samples[label].append((int(stamp) - exited) / 1e6)
                        last_exit[label] = None
    finally:
        for label in setups:
            procs.stop(f"restart {label}")
        for fifo in fifos.values():
            fifo.close()
    results: dict[str, Any] = {EP: None, SUPD: None}
    for label, values in samples.items():
        if values:
            results[label] = {
                "median_ms": rounded(statistics.median(values)),
                "p90_ms": rounded(percentile(values, 90)),
                "samples": len(values),
            }
    return {
        "restart": {
            "child_lifetime_s": sizes.child_lifetime,
            "child_own_start_ms": rounded(statistics.median(own_start)),
            "results": results,
        }
    }


def render(r: Result) -> str:
    return (
        table(
            "5. restart after a clean exit: child exit to next child start (ms)",
            [("median ms", "median_ms"), ("p90 ms", "p90_ms"), ("samples", "samples")],
            r["results"],
        )
        + f"\n  (the child's own start, interpreter up to its first line: "
        f"{r['child_own_start_ms']} ms, included above)"
    )


def budgets(r: Result) -> list[Budget]:
    restart = get(r, "results", EP, "median_ms")
    return [budget("restart after a clean exit", "< 50 ms", restart, 49.999, f"{restart} ms")]


MEASURE = Measure(
    name="restart",
    title="restart after a clean exit",
    run=run,
    sections=(Section("restart", render, budgets, {"child_own_start_ms": None, "results": {}}),),
)
