"""8. The cost of one ENTRYPOINT_MAX_RSS sample: `group_rss` for groups of 1, 20 and 200 processes.

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

which is what benchmarks/run.py does (as root, with the throwaway venv's
interpreter, so that the installed entrypoint is measured).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if __name__ == "__main__":  # run as a file: this folder must not shadow the standard library
    if sys.path and Path(sys.path[0]).resolve() == ROOT / "benchmarks":
        del sys.path[0]
    sys.path.append(str(ROOT))  # last: an installed entrypoint wins over this checkout

import argparse  # noqa: E402 - after the path is set
import contextlib  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from typing import Any  # noqa: E402

from benchmarks.common import clean_env, run_quiet  # noqa: E402
from benchmarks.harness import Context, Measure, Result, Section  # noqa: E402
from benchmarks.table import table  # noqa: E402

INTERVAL_S = 5.0
WAYS = ("group_rss", "stat + statm", "statm of the members", "open().read() stat")
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
    from entrypoint.runtime import procs

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
    from entrypoint.runtime import memory

    return sum(map(read_statm_rss, pids)) * memory.PAGE_SIZE


def stat_then_statm(pgid: int) -> int:
    from entrypoint.runtime import memory, procs

    tree = procs.group_tree(procs.scan(), pgid)
    return sum(read_statm_rss(proc.pid) for proc in tree) * memory.PAGE_SIZE


def python_files_scan(pgid: int) -> int:
    from entrypoint.runtime import memory, procs

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


def sample_costs(samples: int) -> dict[str, dict[str, object]]:
    """Every group, every way: {group label: {"processes_in_proc": n, way: figures}}."""
    from entrypoint.runtime import memory, procs

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
            row.update(measure(ways, samples))
            results[label] = row
    return results


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--json")
    args = parser.parse_args()

    results = sample_costs(args.samples)
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


# -- as a measure of benchmarks/run.py ----------------------------------------------------


def run(ctx: Context) -> dict[str, Result]:
    """This file run by the throwaway venv's interpreter, in a PID namespace of its own if root."""
    out = ctx.tmp / "memory_sample.json"
    argv = [ctx.peers.python, __file__, "--samples", str(ctx.sizes.memory_samples)]
    argv += ["--json", str(out)]
    namespace = ctx.peers.unshare is not None and os.geteuid() == 0
    if namespace:
        argv = [str(ctx.peers.unshare), "--pid", "--fork", "--kill-child", "--mount-proc", *argv]
    result = run_quiet(argv, 300, env=clean_env(), start_new_session=True)
    if result.returncode != 0:
        raise RuntimeError(f"memory_sample.py exited {result.returncode}:\n{result.stderr[-3000:]}")
    groups: dict[str, Any] = json.loads(out.read_text())
    per_minute = 60 / INTERVAL_S
    rows: dict[str, Any] = {}
    for label, row in groups.items():
        rows[label] = {
            "processes_in_proc": row["processes_in_proc"],
            **{way: row[way] for way in WAYS},
            "cpu_ms_per_minute": round(row["group_rss"]["cpu_ms_mean"] * per_minute, 3),
        }
    return {
        "memory_sample": {
            "samples": ctx.sizes.memory_samples,
            "pid_namespace": bool(namespace),
            "interval_s": INTERVAL_S,
            "wakeups_per_minute": per_minute,
            "results": rows,
        }
    }


def render(r: Result) -> str:
    flat = {
        label: {
            "in_proc": row["processes_in_proc"],
            "wall_p50": round(row["group_rss"]["wall_ms_median"], 3),
            "wall_p90": round(row["group_rss"]["wall_ms_p90"], 3),
            "cpu_p50": round(row["group_rss"]["cpu_ms_median"], 3),
            "per_minute": row["cpu_ms_per_minute"],
            **{
                way: round(row[way]["cpu_ms_median"], 3)
                for way in WAYS[1:]
                if isinstance(row.get(way), dict)
            },
        }
        for label, row in r["results"].items()
    }
    where = "in a PID namespace of its own" if r.get("pid_namespace") else "in the host's /proc"
    return (
        table(
            f"8. one ENTRYPOINT_MAX_RSS sample, group_rss ({r['samples']} samples, {where}, ms)",
            [
                ("in /proc", "in_proc"),
                ("wall p50", "wall_p50"),
                ("wall p90", "wall_p90"),
                ("CPU p50", "cpu_p50"),
                ("CPU ms/min", "per_minute"),
                ("stat+statm", "stat + statm"),
                ("statm only", "statm of the members"),
                ("open() stat", "open().read() stat"),
            ],
            flat,
        )
        + f"\n  (CPU ms/min: at the default {r.get('interval_s', INTERVAL_S):g} s interval, "
        f"{r.get('wakeups_per_minute', 12):g} wakeups a minute; the last three columns: "
        "CPU p50 of the alternatives)"
    )


MEASURE = Measure(
    name="memory",
    title="the cost of one memory sample (benchmarks/memory_sample.py)",
    run=run,
    sections=(Section("memory_sample", render, empty={"samples": 0, "results": {}}),),
)


if __name__ == "__main__":
    raise SystemExit(main())
