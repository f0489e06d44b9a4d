"""7. Worker start: `MODE=worker entrypoint run -- sleep 3600` to its `child_started` line.

With one Redis dependency (QUEUE_URL on the real Redis at 6379: a PING before the
child starts) and with none; `python3 -c pass` (spawned the same way, to its exit)
is the reference. The time is from just before the spawn to the moment the
`child_started` event arrives on the entrypoint's stderr (JSON logs); then the
worker is stopped (TERM) and the next command in the rotation starts. Then the
same start under `python -X importtime`: every module imported before
`child_started`, counted, and the heaviest packages and modules.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import statistics
import time
from collections.abc import Sequence
from typing import Any

from benchmarks import imports
from benchmarks.common import (
    PY,
    REDIS_URL,
    clean_env,
    kill_tree,
    percentile,
    redis_up,
    rounded,
    tree_of,
    worker_env,
)
from benchmarks.harness import Context, Measure, Result, Section
from benchmarks.table import table

START_REDIS = "entrypoint worker, Redis dep."
START_PLAIN = "entrypoint worker, no dep."
EVENT = "child_started"


def is_event(line: str, event: str) -> bool:
    if not line.startswith("{"):
        return False
    try:
        record = json.loads(line)
    except ValueError:
        return False
    return isinstance(record, dict) and record.get("event") == event


def start_until(
    argv: Sequence[str], env: dict[str, str], event: str | None = EVENT, timeout: float = 20.0
) -> tuple[float, list[str]]:
    """Spawn argv, read its stderr until `event` is logged: (ms from the spawn, lines so far).

    With `event` None, until its stderr closes (it exited). posix_spawn, as for
    the web figures, keeps the harness's own part small and the same for every
    row. The process, and whatever it started, is stopped before this returns.
    """
    read, write = os.pipe()
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
        (os.POSIX_SPAWN_DUP2, write, 2),
        (os.POSIX_SPAWN_CLOSE, read),
    ]
    started = time.perf_counter_ns()
    pid = os.posix_spawn(argv[0], list(argv), env, file_actions=actions, setsid=True)
    os.close(write)
    buffer, lines = b"", list[str]()
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"no {event or 'exit'} within {timeout} s: {lines[-5:]}")
            if not select.select([read], [], [], left)[0]:
                continue
            chunk = os.read(read, 65536)
            arrived = time.perf_counter_ns()
            if not chunk:
                if event is None:
                    return (arrived - started) / 1e6, lines
                raise RuntimeError(f"exited before {event}: {lines[-5:]}")
            *complete, buffer = (buffer + chunk).split(b"\n")
            for raw in complete:
                line = raw.decode(errors="replace")
                lines.append(line)
                if event is not None and is_event(line, event):
                    return (arrived - started) / 1e6, lines
    finally:
        stop_pid(pid)
        os.close(read)


def stop_pid(pid: int, timeout: float = 5.0) -> None:
    """TERM, a bounded wait, then KILL to whatever of its tree is left; reaped."""
    tree = tree_of(pid)
    pidfd = os.pidfd_open(pid)
    try:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        exited = bool(select.select([pidfd], [], [], timeout)[0])
        tree += tree_of(pid)
        if not exited:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        kill_tree(tree)
        os.waitpid(pid, 0)
    finally:
        os.close(pidfd)


def run(ctx: Context) -> dict[str, Result]:
    peers, tmp = ctx.peers, ctx.tmp
    sleep = [shutil.which("sleep") or "/bin/sleep", "3600"]
    argv = [peers.entrypoint, "run", "--", *sleep]
    setups: dict[str, dict[str, str] | None] = {
        START_REDIS: worker_env(tmp, "start-redis", QUEUE_URL=REDIS_URL) if redis_up() else None,
        START_PLAIN: worker_env(tmp, "start-plain"),
        PY: clean_env(),
    }
    present = [label for label, env in setups.items() if env is not None]
    samples: dict[str, list[float]] = {label: [] for label in present}
    for round_ in range(1 + ctx.sizes.worker_starts):
        shift = round_ % len(present)
        for label in present[shift:] + present[:shift]:
            env = setups[label]
            assert env is not None
            if label == PY:
                ms = start_until([peers.python, "-c", "pass"], env, event=None)[0]
            else:
                ms = start_until(argv, env)[0]
            if round_:
                samples[label].append(ms)
    results: dict[str, Any] = dict.fromkeys(setups)
    for label in present:
        values = samples[label]
        results[label] = {
            "median_ms": rounded(statistics.median(values)),
            "p90_ms": rounded(percentile(values, 90)),
            "max_ms": rounded(max(values)),
        }
    importtime: dict[str, Any] = {}
    for label in (START_REDIS, START_PLAIN):
        env = setups[label]
        if env is None:
            continue
        runs = [
            imports.parse(start_until([peers.python, "-X", "importtime", *argv], env)[1])
            for _ in range(ctx.sizes.importtime_runs)
        ]
        importtime[label] = imports.median_run(runs, imports.installed(peers.python))
    return {
        "worker_start": {
            "samples": ctx.sizes.worker_starts,
            "queue_url": REDIS_URL,
            "results": results,
            "importtime": importtime,
        }
    }


def render(r: Result) -> str:
    text = table(
        f"7. worker start to child_started (median of {r['samples']}, ms)",
        [("median ms", "median_ms"), ("p90 ms", "p90_ms"), ("max ms", "max_ms")],
        r["results"],
    )
    for label, found in r.get("importtime", {}).items():
        text += "\n" + imports.line(f"-X importtime, {label}", found)
        heavy = ", ".join(f"{m['module']} {m['self_ms']} ms" for m in found["heaviest"])
        text += f"\n    heaviest modules: {heavy}"
    return text


MEASURE = Measure(
    name="worker",
    title="worker start to child_started (Redis dependency), -X importtime",
    run=run,
    sections=(Section("worker_start", render, empty={"samples": 0, "results": {}}),),
)
