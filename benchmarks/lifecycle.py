"""The lifecycle figures, measured with the real entrypoint and real children.

    python benchmarks/lifecycle.py [--quick] [--json FILE]

1. idle cost with ENTRYPOINT_MAX_RSS set, at the default 5 s interval, over a
   minute (15 s with --quick), next to the same worker without it: wakeups
   (voluntary context switches) and CPU time of the entrypoint, per minute;
2. stop to exit with 20 grandchildren escaped into sessions of their own
   (double fork + setsid, each exits on TERM): SIGTERM to the entrypoint until
   it has exited, every grandchild gone (median and max of N runs); the same
   with 5 of them ignoring TERM and a 1 s grace, for scale;
3. memory recycle detection: a child holding 60 MiB allocates 80 MiB more
   against ENTRYPOINT_MAX_RSS=100M; the time from the start of that
   allocation to the `memory_recycle` line, at intervals of 0.2 s and 1 s (a
   sample comes at most one interval after the crossing; the figure is that
   wait plus the allocation, the sample and the log line).

The entrypoint is this checkout's (`python -m entrypoint`, the venv running
this script); children are tests/child.py. Nothing is asserted; every process
started is stopped in a `finally`.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CHILD = [sys.executable, str(ROOT / "tests" / "child.py")]
ENTRYPOINT = [sys.executable, "-m", "entrypoint"]
CLK_TCK = os.sysconf("SC_CLK_TCK")

# The child of section 3: allocate, touch every page, say when (wall clock, as the log's).
# Below the limit first (about 70 MiB resident), then past it: the time just before the
# second allocation is when the crossing starts. It comes at a random moment of the sampling
# period, so that the median is the typical wait.
ALLOCATE = """
import os, random, signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
below = b"\\x01" * (60 * 2**20)
time.sleep(0.3 + random.random() * float(sys.argv[1]))
print(f"crossing {time.time()!r}", flush=True)
above = b"\\x01" * (80 * 2**20)
while True:
    signal.pause()
"""


def env_of(tmp: Path, name: str, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ENTRYPOINT_") and k not in ("MODE", "QUEUE_URL", "QUEUE_CONNECTION")
    }
    env.update(
        PYTHONPATH=str(ROOT),
        MODE="worker",
        ENTRYPOINT_LOG_FORMAT="json",
        ENTRYPOINT_STATE_FILE=str(tmp / f"state-{name}.json"),
        **extra,
    )
    return env


class Entrypoint:
    """`entrypoint run -- ARGV` with its stdout and stderr lines collected, time-stamped."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [*ENTRYPOINT, "run", "--", *argv],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[tuple[float, str]] = []  # (monotonic time it was read, line)
        self._changed = threading.Condition()
        for stream in (self.proc.stdout, self.proc.stderr):
            threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            with self._changed:
                self.lines.append((time.monotonic(), line.rstrip("\n")))
                self._changed.notify_all()

    def wait_for(self, text: str, timeout: float = 30) -> tuple[float, str]:
        """The first line that starts with `text` (or holds it, for an event's JSON)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for seen in self.lines:
                    if seen[1].startswith(text) or (text.startswith('"') and text in seen[1]):
                        return seen
                left = deadline - time.monotonic()
                if left <= 0:
                    tail = "\n".join(line for _, line in self.lines[-20:])
                    raise TimeoutError(f"{text!r} not seen within {timeout} s\n{tail}")
                self._changed.wait(min(left, 0.1))

    def event(self, name: str) -> dict[str, Any]:
        _, line = self.wait_for(f'"event": "{name}"')
        found: dict[str, Any] = json.loads(line)
        return found

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@contextlib.contextmanager
def running(argv: list[str], env: dict[str, str]) -> Iterator[Entrypoint]:
    run = Entrypoint(argv, env)
    try:
        yield run
    finally:
        run.stop()


def usage(pid: int) -> tuple[int, float]:
    """Voluntary context switches (all threads) and CPU ms of `pid`."""
    switches = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/status") as handle:
            for line in handle:
                if line.startswith("voluntary_ctxt_switches"):
                    switches += int(line.split()[1])
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu_ms = (int(fields[11]) + int(fields[12])) * 1000 / CLK_TCK
    with contextlib.suppress(OSError):  # the scheduler's own count, in ns, where it is kept
        for line in Path(f"/proc/{pid}/sched").read_text().splitlines():
            if line.startswith("se.sum_exec_runtime"):
                cpu_ms = float(line.split(":")[1])
    return switches, cpu_ms


def bench_idle(tmp: Path, seconds: float) -> dict[str, Any]:
    setups = {
        "off": env_of(tmp, "off"),
        "MAX_RSS=1G, 5 s": env_of(tmp, "rss", ENTRYPOINT_MAX_RSS="1G"),
    }
    results: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        runs = {label: stack.enter_context(running(CHILD, env)) for label, env in setups.items()}
        for run in runs.values():
            run.wait_for("ready (pid:")
        time.sleep(1.0)  # past the start-up
        before = {label: usage(run.proc.pid) for label, run in runs.items()}
        started = time.monotonic()
        time.sleep(seconds)  # the idle window being measured
        elapsed = time.monotonic() - started
        after = {label: usage(run.proc.pid) for label, run in runs.items()}
    for label in setups:
        switches = after[label][0] - before[label][0]
        cpu_ms = after[label][1] - before[label][1]
        results[label] = {
            "wakeups_per_minute": round(switches * 60 / elapsed, 1),
            "cpu_ms_per_minute": round(cpu_ms * 60 / elapsed, 2),
        }
    return {"seconds": round(elapsed, 1), "results": results}


def gone(pids: list[int]) -> bool:
    return not any(Path(f"/proc/{pid}").exists() for pid in pids)


def bench_descendants(tmp: Path, rounds: int) -> dict[str, Any]:
    cases = {
        "20 escaped, all exit on TERM": ([], "25"),
        "20 escaped, 5 ignore TERM, grace 1 s": (["--escape-ignore", "5"], "1"),
    }
    results: dict[str, Any] = {}
    for label, (extra, grace) in cases.items():
        times = []
        for round_ in range(rounds):
            env = env_of(tmp, f"desc-{round_}", ENTRYPOINT_STOP_TIMEOUT=grace)
            argv = [*CHILD, "--escape", "20", *extra]
            with running(argv, env) as run:
                _, line = run.wait_for("left 20 escaped: ")
                pids = [int(p) for p in line.split(": ", 1)[1].split(" ")[0].split(",")]
                sent = time.monotonic()
                run.proc.send_signal(signal.SIGTERM)
                run.proc.wait(30)
                exited = time.monotonic()
                left = [] if gone(pids) else pids
            times.append((exited - sent) * 1000)
            if left:
                for pid in left:  # not left running past the benchmark
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                raise RuntimeError(f"{label}: grandchildren left after the exit: {left}")
        results[label] = {
            "median_ms": round(statistics.median(times), 1),
            "max_ms": round(max(times), 1),
            "rounds": rounds,
        }
    return results


def at(event: dict[str, Any]) -> float:
    return datetime.datetime.fromisoformat(event["timestamp"]).timestamp()


def bench_recycle(tmp: Path, rounds: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for interval in ("0.2", "1"):
        waits = []
        for round_ in range(rounds):
            env = env_of(
                tmp, f"rec-{round_}", ENTRYPOINT_MAX_RSS="100M", ENTRYPOINT_MEMORY_INTERVAL=interval
            )
            with running([sys.executable, "-c", ALLOCATE, interval], env) as run:
                _, line = run.wait_for("crossing ")
                crossing = float(line.split()[1])
                waits.append((at(run.event("memory_recycle")) - crossing) * 1000)
        results[f"interval {interval} s"] = {
            "median_ms": round(statistics.median(waits), 1),
            "max_ms": round(max(waits), 1),
            "rounds": rounds,
        }
    return results


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        tmp = Path(directory)
        print("1/3 idle with and without ENTRYPOINT_MAX_RSS", file=sys.stderr)
        idle = bench_idle(tmp, 15.0 if args.quick else 60.0)
        print("2/3 stop with 20 escaped grandchildren", file=sys.stderr)
        descendants = bench_descendants(tmp, 3 if args.quick else 10)
        print("3/3 memory recycle detection", file=sys.stderr)
        recycle = bench_recycle(tmp, 3 if args.quick else 8)
    print(f"\n1. idle supervising process, child sleeping ({idle['seconds']} s window)")
    print(f"{'':<24}{'wakeups / min':>16}{'CPU ms / min':>16}")
    for label, row in idle["results"].items():
        print(f"{label:<24}{row['wakeups_per_minute']:>16}{row['cpu_ms_per_minute']:>16}")
    print("\n2. SIGTERM to exit, every grandchild gone")
    for label, row in descendants.items():
        print(f"{label:<40}median {row['median_ms']:>8} ms   max {row['max_ms']:>8} ms")
    print("\n3. allocation past ENTRYPOINT_MAX_RSS to memory_recycle")
    for label, row in recycle.items():
        print(f"{label:<40}median {row['median_ms']:>8} ms   max {row['max_ms']:>8} ms")
    if args.json:
        document = {"idle": idle, "descendants": descendants, "recycle": recycle}
        Path(args.json).write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
