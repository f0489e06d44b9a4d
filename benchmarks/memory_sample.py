"""The cost of one ENTRYPOINT_MAX_RSS sample: `group_rss` for groups of 1, 20 and 200 processes.

    python benchmarks/memory_sample.py [--samples N] [--json FILE]

For each group (a leader and its forked children, all blocked on a pipe, in a
process group of their own) it measures the wall time and the CPU time of this
process per sample, median and p90 over --samples samples, of:

- `group_rss`: what the supervisor calls (one /proc/PID/stat read per process
  /proc lists: membership and RSS in one file);
- `stat + statm`: the same scan for membership, then /proc/PID/statm for each
  member's RSS (the alternative: a second file per member);
- `statm of the members`: only the members' statm, pids known in advance (a
  lower bound no real sample can reach: membership needs stat);
- `open().read() stat`: the `group_rss` scan with Python file objects instead of
  os.open/os.read.

and the same for 20 processes of 50 threads each (stat sums every thread's CPU
times, statm does not look at threads). Then the cost at the default 5 s
interval: wakeups and CPU per minute. Nothing is asserted.

A scan reads every process /proc lists, not only the group's: to measure it as
in a container (its own PID namespace, only its own processes), run it as

    unshare --pid --fork --mount-proc python benchmarks/memory_sample.py
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from entrypoint.runtime import memory, procs  # noqa: E402 - after the path is set

INTERVAL_S = 5.0
LEADER = """
import os, sys, threading
count, threads = int(sys.argv[1]), int(sys.argv[2])
def park():
    for _ in range(threads - 1):
        threading.Thread(target=os.read, args=(0, 1), daemon=True).start()
for _ in range(count - 1):
    if os.fork() == 0:
        park()
        os.read(0, 1)
        os._exit(0)
park()
print("ready", flush=True)
os.read(0, 1)
"""


@contextlib.contextmanager
def group(count: int, threads: int = 1) -> Iterator[int]:
    """A process group of `count` processes with `threads` threads each; its pgid."""
    with subprocess.Popen(
        [sys.executable, "-c", LEADER, str(count), str(threads)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        process_group=0,
    ) as leader:
        try:
            assert leader.stdout is not None
            if leader.stdout.readline().strip() != b"ready":
                raise RuntimeError("the group did not start")
            members = procs.process_group_members(leader.pid)
            if len(members) != count:
                raise RuntimeError(f"{len(members)} members, expected {count}")
            yield leader.pid
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(leader.pid, signal.SIGKILL)
            leader.wait(10)
            # Its orphans are reaped by PID 1 in its own time (by this process, when
            # it is PID 1): the next group's scan must not pay for their zombies.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and any(
                proc.pgid == leader.pid for proc in procs.scan()
            ):
                reap_orphans()
                time.sleep(0.05)


def reap_orphans() -> None:
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def read_statm_rss(pid: int) -> int:
    try:
        fd = os.open(f"/proc/{pid}/statm", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return 0
    try:
        return int(os.read(fd, 256).split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    finally:
        os.close(fd)


def statm_of(pids: list[int]) -> int:
    return sum(map(read_statm_rss, pids)) * memory.PAGE_SIZE


def stat_then_statm(pgid: int) -> int:
    tree = procs.group_tree(procs.scan(), pgid)
    return sum(read_statm_rss(proc.pid) for proc in tree) * memory.PAGE_SIZE


def python_files_scan(pgid: int) -> int:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as handle:
                    stat = procs.parse_stat(handle.read())
            except OSError:
                continue
            if stat is not None:
                found.append(stat)
    return sum(p.rss_pages for p in procs.group_tree(found, pgid)) * memory.PAGE_SIZE


def measure(ways: dict[str, Callable[[], object]], samples: int) -> dict[str, dict[str, float]]:
    """Each way `samples` times, round-robin, so that the machine's drift falls on all alike."""
    walls: dict[str, list[float]] = {name: [] for name in ways}
    cpus: dict[str, list[float]] = {name: [] for name in ways}
    order = list(ways)
    for turn in range(samples):
        for name in order[turn % len(order) :] + order[: turn % len(order)]:
            wall, cpu = time.perf_counter(), time.process_time()
            ways[name]()
            cpus[name].append(time.process_time() - cpu)
            walls[name].append(time.perf_counter() - wall)
    figures = {}
    for name in ways:
        wall_sorted, cpu_sorted = sorted(walls[name]), sorted(cpus[name])
        figures[name] = {
            "wall_ms_median": statistics.median(wall_sorted) * 1e3,
            "wall_ms_p90": wall_sorted[int(len(wall_sorted) * 0.9)] * 1e3,
            "cpu_ms_median": statistics.median(cpu_sorted) * 1e3,
            "cpu_ms_mean": statistics.fmean(cpu_sorted) * 1e3,
        }
    return figures


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--json")
    args = parser.parse_args()

    results: dict[str, dict[str, object]] = {}
    cases = [(1, 1), (20, 1), (200, 1), (20, 50)]
    for count, threads in cases:
        label = f"{count} processes" + (f" x {threads} threads" if threads > 1 else "")
        with group(count, threads) as pgid:
            known = procs.process_group_members(pgid)
            listed = sum(1 for name in os.listdir("/proc") if name.isdigit())
            ways: dict[str, Callable[[], object]] = {
                "group_rss": functools.partial(memory.group_rss, pgid),
                "stat + statm": functools.partial(stat_then_statm, pgid),
                "statm of the members": functools.partial(statm_of, known),
                "open().read() stat": functools.partial(python_files_scan, pgid),
            }
            for way in ways.values():
                way()  # warm the dentry cache and the code
            row: dict[str, object] = {"processes_in_proc": listed}
            row.update(measure(ways, args.samples))
            results[label] = row

    print(f"{'group':<28}{'processes in /proc':>20}")
    for label, row in results.items():
        print(f"{label:<28}{row['processes_in_proc']:>20}")
    print()
    header = f"{'group':<28}{'way':<24}{'wall ms p50':>12}{'wall p90':>10}{'cpu ms p50':>12}"
    print(header)
    for label, row in results.items():
        for name, figures in row.items():
            if isinstance(figures, dict):
                print(
                    f"{label:<28}{name:<24}{figures['wall_ms_median']:>12.3f}"
                    f"{figures['wall_ms_p90']:>10.3f}{figures['cpu_ms_median']:>12.3f}"
                )
    per_minute = 60 / INTERVAL_S
    print(f"\nAt ENTRYPOINT_MEMORY_INTERVAL={INTERVAL_S:g} s: {per_minute:g} wakeups per minute")
    for label, row in results.items():
        figures = row["group_rss"]
        assert isinstance(figures, dict)
        cpu_per_minute = figures["cpu_ms_mean"] * per_minute
        print(
            f"  {label:<28} {cpu_per_minute:8.2f} ms CPU per minute "
            f"({cpu_per_minute / 600:.4f} % of one core)"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
