"""Memory recycling and OOM kills, with real allocations, real cgroups and the real CLI.

A child that grows to 150 MiB against ENTRYPOINT_MAX_RSS=100M; a prefork-like
pool whose members are each below the limit and together above it; a
percentage of a real cgroup v1 limit; a real OOM kill of a child of an
entrypoint that runs inside a memory cgroup of 128 MiB. The cgroup tests need
root and a writable memory controller (tests/cgroups.py).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from entrypoint.runtime import memory
from tests.cgroups import inside, limited_cgroup
from tests.helpers import CHILD, ENTRYPOINT, Running, base_env, entrypoint, run_entrypoint
from tests.servers import missing

MIB = 2**20


def worker(tmp_path: Path, *child_args: str, **env: str) -> Running:
    settings = {"MODE": "worker", "ENTRYPOINT_STOP_TIMEOUT": "10", **env}
    argv = [*CHILD, "--runs", str(tmp_path / "runs"), *child_args]
    return entrypoint("run", "--", *argv, env=base_env(**settings))


def pids_said(run: Running, pattern: str, count: int = 1) -> list[int]:
    return [int(m.group(1)) for m in run.wait_stdout(pattern + r" \(pid: (\d+)\)", 15, count)]


# --- recycling ----------------------------------------------------------------------


def test_a_child_growing_past_max_rss_is_recycled_gracefully_and_not_as_a_failure(
    tmp_path: Path,
) -> None:
    env = {
        "ENTRYPOINT_MAX_RSS": "100M",
        "ENTRYPOINT_MEMORY_INTERVAL": "0.2",
        "ENTRYPOINT_BACKOFF_INITIAL": "0.05",
    }
    plan = ["--plan", "grow150,fail,serve", "--on-term", "finish", "--work", "0.3"]
    with worker(tmp_path, *plan, **env) as run:
        (recycle,) = run.wait_event("memory_recycle", timeout=20)
        (first,) = pids_said(run, r"^run 1 step grow150")
        (third,) = pids_said(run, r"^run 3 step serve")
        run.wait_stdout(rf"^ready \(pid: {third}\)")  # its handlers are in place
        run.signal(signal.SIGTERM)
        assert run.wait(15) == 0
    assert recycle["limit_bytes"] == 100 * MIB
    assert recycle["rss_bytes"] > 100 * MIB
    assert recycle["level"] == "warning"
    # Graceful: the stop signal, and the job in flight finished; no SIGKILL.
    assert f"signal SIGTERM (pid: {first})" in run.stdout
    assert f"job finished (pid: {first})" in run.stdout
    assert not run.events("stop_escalated")
    exits = run.events("child_exited")
    assert [(e["reason"], e["exit_code"]) for e in exits] == [
        ("memory", 0),
        ("exit", 1),
        ("stop", 0),
    ]
    # At once and not a failure: the failure that follows is the first of its sequence.
    restarts = run.events("restart_scheduled")
    assert [(r["delay_s"], r["attempt"], r["reason"]) for r in restarts[:1]] == [(0.0, 0, "memory")]
    assert restarts[1]["attempt"] == 1


@pytest.mark.parametrize(("members", "recycled"), [(3, True), (1, False)])
def test_the_pools_own_children_count(tmp_path: Path, members: int, recycled: bool) -> None:
    """Each member holds 40 MiB, below the 100M limit on its own: only the sum crosses it.

    The first sample comes a second after the start, once the pool has grown.
    """
    env = {"ENTRYPOINT_MAX_RSS": "100M", "ENTRYPOINT_MEMORY_INTERVAL": "1"}
    with worker(tmp_path, "--pool", str(members), "--pool-mib", "40", **env) as run:
        pool = pids_said(run, r"^pool member holds 40 MiB", members)
        for pid in pool:
            stat = Path(f"/proc/{pid}/statm").read_text().split()
            assert int(stat[1]) * memory.PAGE_SIZE < 100 * MIB
        if recycled:
            (recycle,) = run.wait_event("memory_recycle", timeout=10)
            assert recycle["rss_bytes"] > 100 * MIB
            run.wait_event("child_exited")
            assert run.events("child_exited")[0]["reason"] == "memory"
            # The master stopped its pool itself: nothing was left for a SIGKILL.
            assert not run.events("stop_escalated")
            assert not run.events("descendants_killed")
        else:
            # Two samples' worth, against a pool that stays put: nothing to recycle.
            time.sleep(2.0)
            assert not run.events("memory_recycle")
        run.signal(signal.SIGTERM)
        run.wait(15)


@pytest.mark.parametrize(
    ("value", "what"),
    [
        ("lots", "not a size"),
        ("0", "at least 1 byte"),
        ("-5M", "cannot be negative"),
        ("150%", "cannot be above 100%"),
        ("0%", "0% leaves no memory"),
        ("12X", "not a size"),
    ],
)
@pytest.mark.parametrize("command", ["run", "check"])
def test_a_bad_max_rss_is_78_in_one_line_naming_the_forms(
    command: str, value: str, what: str
) -> None:
    env = base_env(MODE="worker", ENTRYPOINT_MAX_RSS=value)
    result = run_entrypoint(command, "--", *CHILD, env=env)
    assert result.returncode == 78
    (line,) = result.stderr.splitlines()
    assert f"ENTRYPOINT_MAX_RSS={value}" in line
    assert what in line
    assert "512M" in line
    assert "90%" in line


@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_a_bad_memory_interval_is_78_in_one_line(value: str) -> None:
    env = base_env(MODE="worker", ENTRYPOINT_MAX_RSS="100M", ENTRYPOINT_MEMORY_INTERVAL=value)
    result = run_entrypoint("run", "--", *CHILD, env=env)
    assert result.returncode == 78
    (line,) = result.stderr.splitlines()
    assert f"ENTRYPOINT_MEMORY_INTERVAL={value}" in line


@pytest.mark.parametrize("command", ["run", "check"])
def test_a_percentage_without_a_cgroup_limit_is_78(command: str) -> None:
    if memory.memory_limit(memory.find_cgroup()) is not None:
        missing("this process's cgroup has a memory limit: a percentage would resolve")
    env = base_env(MODE="worker", ENTRYPOINT_MAX_RSS="90%")
    result = run_entrypoint(command, "--", *CHILD, env=env)
    assert result.returncode == 78
    (line,) = result.stderr.splitlines()
    assert "ENTRYPOINT_MAX_RSS=90%" in line
    assert "needs a cgroup memory limit" in line
    assert "child_started" not in result.stderr


def test_a_percentage_is_of_the_cgroup_limit(tmp_path: Path) -> None:
    """Inside a real v1 (or v2) memory cgroup of 512 MiB, 20% is 102.4 MiB."""
    env = base_env(MODE="worker", ENTRYPOINT_MAX_RSS="20%", ENTRYPOINT_MEMORY_INTERVAL="0.2")
    with limited_cgroup(512 * MIB) as (_outer, inner):
        check = subprocess.run(
            inside(inner, [*ENTRYPOINT, "check", "--", *CHILD]),
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert check.returncode == 0, check.stderr
        argv = [*CHILD, "--runs", str(tmp_path / "runs"), "--plan", "grow150,serve"]
        with Running(inside(inner, [*ENTRYPOINT, "run", "--", *argv]), env) as run:
            (recycle,) = run.wait_event("memory_recycle", timeout=20)
            (second,) = pids_said(run, r"^run 2 step serve")
            run.wait_stdout(rf"^ready \(pid: {second}\)")  # its handlers are in place
            run.signal(signal.SIGTERM)
            assert run.wait(15) == 0
    assert recycle["limit_bytes"] == 512 * MIB * 20 // 100
    assert recycle["rss_bytes"] > recycle["limit_bytes"]


# --- off means off ------------------------------------------------------------------


def voluntary_switches(pid: int) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("voluntary_ctxt_switches"):
                return int(line.split()[1])
    raise AssertionError("no voluntary_ctxt_switches")


def idle_worker(**env: str) -> Running:
    run = entrypoint("run", "--", *CHILD, env=base_env(MODE="worker", **env))
    run.wait_stdout(r"^ready")
    run.wait_event("child_started")
    time.sleep(0.3)  # past the start-up: the measurement begins once it is idle
    return run


@pytest.mark.parametrize(
    ("env", "seconds", "sampled"),
    [
        ({}, 5.0, False),
        ({"ENTRYPOINT_MAX_RSS": "1G", "ENTRYPOINT_MEMORY_INTERVAL": "0.2"}, 2.0, True),
    ],
)
def test_without_max_rss_nothing_wakes_up(
    env: dict[str, str], seconds: float, sampled: bool
) -> None:
    """Off: no wakeup in five idle seconds. On (the control): a wakeup per sample."""
    with idle_worker(**env) as run:
        before = voluntary_switches(run.pid)
        time.sleep(seconds)  # the measurement IS the idle window
        woke = voluntary_switches(run.pid) - before
        run.signal(signal.SIGTERM)
        run.wait(10)
    if sampled:
        assert woke >= seconds / 0.2 / 2, woke
    else:
        assert woke == 0


def openat_calls(pid: int, seconds: float) -> int:
    """How many openat() `pid` made in `seconds`, counted by strace attached to it."""
    strace = shutil.which("strace")
    if strace is None:
        missing("strace is not installed")
    assert strace is not None
    tracer = subprocess.Popen(
        [strace, "-c", "-e", "trace=openat", "-p", str(pid)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(seconds)  # the window being counted
    finally:
        tracer.send_signal(signal.SIGINT)
        _, report = tracer.communicate(timeout=10)
    if "attached" not in report and "calls" not in report:
        missing(f"strace cannot attach here: {report.strip()[:200]}")
    # `% time  seconds  usecs/call  calls  errors  syscall`; no row at all when none was made.
    for line in report.splitlines():
        fields = line.split()
        if fields and fields[-1] == "openat":
            return int(fields[3])
    return 0


@pytest.mark.parametrize(
    ("env", "sampled"),
    [({}, False), ({"ENTRYPOINT_MAX_RSS": "1G", "ENTRYPOINT_MEMORY_INTERVAL": "0.2"}, True)],
)
def test_without_max_rss_nothing_reads_proc(env: dict[str, str], sampled: bool) -> None:
    with idle_worker(**env) as run:
        opened = openat_calls(run.pid, 2.0)
        run.signal(signal.SIGTERM)
        run.wait(10)
    assert (opened > 0) is sampled, opened


# --- OOM kills, named -----------------------------------------------------------------


def test_an_oom_kill_is_named_and_restarted(tmp_path: Path) -> None:
    """The entrypoint itself in a 128 MiB cgroup; its child allocates past the limit.

    Run 1 is killed with SIGKILL from outside (no OOM: `signal`), run 2 by the
    OOM killer (`oom_kill`), run 3 is stopped (`stop`).
    """
    env = base_env(MODE="worker", ENTRYPOINT_BACKOFF_INITIAL="0.05")
    argv = [*CHILD, "--runs", str(tmp_path / "runs"), "--plan", "serve,oom,serve"]
    with limited_cgroup(128 * MIB) as (outer, inner):
        kills_before = memory.oom_kills(outer)
        with Running(inside(inner, [*ENTRYPOINT, "run", "--", *argv]), env) as run:
            (first,) = pids_said(run, r"^ready")
            os.kill(first, signal.SIGKILL)
            pids_said(run, r"^allocating until killed")
            pids_said(run, r"^run 3 step serve")
            pids_said(run, r"^ready", 2)
            run.signal(signal.SIGTERM)
            assert run.wait(15) == 0
        kills_after = memory.oom_kills(outer)
    assert kills_before is not None
    assert kills_after == kills_before + 1
    exits = run.events("child_exited")
    assert [(e["reason"], e["exit_code"]) for e in exits] == [
        ("signal", 137),
        ("oom_kill", 137),
        ("stop", 0),
    ]
    assert [r["attempt"] for r in run.events("restart_scheduled")] == [1, 2]  # failures


def test_the_oom_kill_counter_is_read_from_the_entrypoints_own_cgroup() -> None:
    """`explain`-free check of the premise: inside the cgroup, the entrypoint finds it."""
    with limited_cgroup(128 * MIB) as (_outer, inner):
        code = (
            "import json; from entrypoint.runtime import memory; c = memory.find_cgroup(); "
            "print(json.dumps([c and c.path, memory.memory_limit(c), memory.oom_kills(c)]))"
        )
        probe = [sys.executable, "-c", code]
        out = subprocess.run(
            inside(inner, probe),
            env=base_env(),
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    path, limit, kills = json.loads(out.stdout)
    assert path == str(inner)
    assert limit == 128 * MIB
    assert kills == 0


def test_a_stop_during_a_recycle_does_not_signal_the_child_again(tmp_path: Path) -> None:
    """The recycle already sent the stop signal: a second one is RQ's and Celery's "stop now"."""
    env = {"ENTRYPOINT_MAX_RSS": "100M", "ENTRYPOINT_MEMORY_INTERVAL": "0.2"}
    plan = ["--plan", "grow150,serve", "--on-term", "finish", "--work", "1"]
    with worker(tmp_path, *plan, **env) as run:
        run.wait_event("memory_recycle", timeout=20)
        (first,) = pids_said(run, r"^finishing job")
        run.signal(signal.SIGTERM)
        assert run.wait(15) == 0
    assert run.stdout.count(f"signal SIGTERM (pid: {first})") == 1
    assert f"job finished (pid: {first})" in run.stdout
    assert run.events("stop_started")
    assert [e["reason"] for e in run.events("child_exited")] == ["stop"]
    assert len(run.events("child_started")) == 1  # stopped: no restart after the recycle


@pytest.mark.parametrize(("env", "imported"), [({}, False), ({"ENTRYPOINT_MAX_RSS": "1G"}, True)])
def test_without_max_rss_the_recycling_code_is_not_even_imported(
    env: dict[str, str], imported: bool
) -> None:
    settings = base_env(
        MODE="worker", ENTRYPOINT_RESTART="never", PYTHONPROFILEIMPORTTIME="1", **env
    )
    result = run_entrypoint("run", "--", "true", env=settings)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "entrypoint.runtime.supervisor" in result.stderr  # the report is there
    assert ("entrypoint.runtime.recycle" in result.stderr) is imported
