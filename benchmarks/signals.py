"""2. Signal forwarding latency: kill() on the supervisor to the child holding the signal.

The child blocks SIGUSR1 and waits in `sigwait`; it writes `time.monotonic_ns()`
(CLOCK_MONOTONIC, the same clock in every process) to a named pipe as soon as
the signal is taken. The benchmark reads the clock, calls `kill()` on the
supervisor and reads the pipe; 10 warm-up signals, then the samples, 2 ms
apart, round-robin over the supervisors (all running at once).
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from benchmarks.common import (
    DUMB,
    EP,
    EP_WARN,
    TINI,
    Fifo,
    clean_env,
    percentile,
    rounded,
    worker_env,
)
from benchmarks.harness import Context, Measure, Result, Section
from benchmarks.table import Budget, budget, get, ratio_text, table

SIGNAL_CHILD = """\
import os, signal, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY)
wanted = {signal.SIGUSR1, signal.SIGTERM, signal.SIGINT}
signal.pthread_sigmask(signal.SIG_BLOCK, wanted)
os.write(fd, b"ready %d\\n" % os.getpid())
while True:
    signum = signal.sigwait(wanted)
    now = time.monotonic_ns()
    if signum != signal.SIGUSR1:
        os._exit(0)
    os.write(fd, b"%d\\n" % now)
"""


def run(ctx: Context) -> dict[str, Result]:
    peers, tmp, procs = ctx.peers, ctx.tmp, ctx.procs
    script = tmp / "signal_child.py"
    script.write_text(SIGNAL_CHILD)
    child = [peers.python, "-I", "-S", str(script)]
    setups: dict[str, tuple[list[str], dict[str, str]] | None] = {
        EP: ([peers.entrypoint, "run", "--", *child], worker_env(tmp, "signal")),
        EP_WARN: (
            [peers.entrypoint, "run", "--", *child],
            worker_env(tmp, "signal-warn", ENTRYPOINT_LOG_LEVEL="warning"),
        ),
        TINI: ([peers.tini, "-s", "--", *child], clean_env()) if peers.tini else None,
        DUMB: ([peers.dumb_init, *child], clean_env()) if peers.dumb_init else None,
    }
    present = [label for label, setup in setups.items() if setup]
    fifos: dict[str, Fifo] = {}
    pids: dict[str, int] = {}
    try:
        for label in present:
            setup = setups[label]
            assert setup is not None
            fifo = fifos[label] = Fifo(tmp / f"signal-{len(fifos)}.fifo")
            pids[label] = procs.start(f"signal {label}", [*setup[0], str(fifo.path)], setup[1])
        for label in present:
            try:
                fifos[label].readline(15)
            except TimeoutError:
                raise RuntimeError(
                    f"{label}: its child never started\n{procs.log_tail('signal ' + label)}"
                ) from None
        samples: dict[str, list[float]] = {label: [] for label in present}
        warmup = 10
        for round_ in range(warmup + ctx.sizes.signals):
            shift = round_ % len(present)
            for label in present[shift:] + present[:shift]:
                sent = time.monotonic_ns()
                os.kill(pids[label], signal.SIGUSR1)
                received = int(fifos[label].readline(5))
                if round_ >= warmup:
                    samples[label].append((received - sent) / 1000)
                # Pacing: let the supervisor finish what follows a forward (its log
                # line) before the next peer is measured on the other core.
                time.sleep(0.002)
    finally:
        for label in present:
            procs.stop(f"signal {label}")
        for fifo in fifos.values():
            fifo.close()
    results: dict[str, Any] = dict.fromkeys(setups)
    for label in present:
        values = samples[label]
        results[label] = {
            "p50_us": rounded(percentile(values, 50), 1),
            "p90_us": rounded(percentile(values, 90), 1),
            "p99_us": rounded(percentile(values, 99), 1),
            "max_us": rounded(max(values), 1),
        }
    return {"signal": {"signals": ctx.sizes.signals, "results": results}}


def render(r: Result) -> str:
    return table(
        f"2. signal forwarding, kill() to the child ({r['signals']} signals, us)",
        [("p50 us", "p50_us"), ("p90 us", "p90_us"), ("p99 us", "p99_us"), ("max us", "max_us")],
        r["results"],
    )


def budgets(r: Result) -> list[Budget]:
    sig, tini = get(r, "results", EP, "p50_us"), get(r, "results", TINI, "p50_us")
    p99 = get(r, "results", EP, "p99_us")
    return [
        budget(
            "signal latency p50",
            "<= 1.5x tini's",
            sig,
            tini and 1.5 * tini,
            ratio_text(sig, tini, "us"),
        ),
        budget("signal latency p99", "< 1 ms", p99, 999.999, f"{p99} us"),
    ]


MEASURE = Measure(
    name="signal",
    title="signal forwarding",
    run=run,
    sections=(Section("signal", render, budgets, {"signals": 0, "results": {}}),),
)
