"""No descendant left behind: processes that left the child's group get the stop too.

A worker double-forks 20 grandchildren into sessions of their own (setsid);
they are re-parented to the entrypoint (a subreaper, or PID 1 of a PID
namespace). On a stop every one gets the stop signal, those that outlive it
get SIGKILL once what is left of the grace has passed (at least 1 s), and
the entrypoint exits, with the child's status, only when none is left. The
controls run the same worker under tini and under a `sh -c 'exec "$@"'`
entrypoint, where the grandchildren survive the stop (or, as PID 1, die by
the kernel's SIGKILL without ever seeing the stop signal).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from entrypoint.runtime import procs
from tests.helpers import CHILD, ENTRYPOINT, Running, base_env, descendants, sleep_until
from tests.servers import missing

ESCAPED = 20
IGNORING = 5
MEMBERS = 500


def at(event: dict[str, Any]) -> float:
    """An event's timestamp, in seconds."""
    return datetime.datetime.fromisoformat(event["timestamp"]).timestamp()


def escapes(run: Running) -> list[int]:
    """The pids of the escaped grandchildren, once all of them are set up."""
    line = run.wait_stdout(rf"^left {ESCAPED} escaped: ([\d,]+)", 30)[0]
    return [int(pid) for pid in line.group(1).split(",")]


def identities(pids: list[int]) -> dict[int, int]:
    """pid -> start time, to tell a process from a later one that reuses its pid."""
    found = {}
    for pid in pids:
        stat = procs.read_stat(pid)
        if stat is not None:
            found[pid] = stat.starttime
    return found


def alive(known: dict[int, int]) -> list[int]:
    """Those of `known` that still exist and are not zombies."""
    left = []
    for pid, start in known.items():
        stat = procs.read_stat(pid)
        if (
            stat is not None
            and stat.starttime == start
            and stat.condition is not procs.State.ZOMBIE
        ):
            left.append(pid)
    return left


def zombies(known: dict[int, int]) -> list[int]:
    """Those of `known` that exited and nobody has reaped yet."""
    left = []
    for pid, start in known.items():
        stat = procs.read_stat(pid)
        if stat is not None and stat.starttime == start and stat.condition is procs.State.ZOMBIE:
            left.append(pid)
    return left


def got_stop_signal(run: Running, pid: int) -> bool:
    return f"signal SIGTERM (pid: {pid})" in run.stdout


@contextlib.contextmanager
def reaped_after(known: dict[int, int]) -> Iterator[None]:
    """SIGKILL whatever of `known` is left once the block ends (the controls leave them)."""
    try:
        yield
    finally:
        for pid in alive(known):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def escaping_worker(*extra: str, stop_timeout: str = "2") -> Running:
    argv = [*CHILD, "--escape", str(ESCAPED), "--exit-code", "3", *extra]
    env = base_env(MODE="worker", ENTRYPOINT_STOP_TIMEOUT=stop_timeout)
    return Running([*ENTRYPOINT, "run", "--", *argv], env)


# --- as a subreaper -----------------------------------------------------------------


def test_every_escaped_grandchild_gets_the_stop_then_sigkill_and_none_is_left() -> None:
    with escaping_worker("--escape-ignore", str(IGNORING)) as run:
        pids = escapes(run)
        known = identities(pids)
        assert len(known) == ESCAPED
        assert all(procs.read_stat(pid).ppid == run.pid for pid in pids)  # type: ignore[union-attr]
        with reaped_after(known):
            run.signal(signal.SIGTERM)
            assert run.wait(20) == 3  # the child's status
            assert alive(known) == []
            # Reaped by the entrypoint itself: not one left as a zombie to whoever adopts it.
            assert zombies(known) == []
    assert all(got_stop_signal(run, pid) for pid in pids)
    (stopping,) = run.events("descendants_stopping")
    (killed,) = run.events("descendants_killed")
    assert (stopping["count"], killed["count"]) == (ESCAPED, IGNORING)
    (started,) = run.events("stop_started")
    (exited,) = run.events("child_exited")
    (finished,) = run.events("stop_finished")
    # The child exited at once: the grandchildren get what is left of the 2 s grace.
    assert at(exited) - at(started) < 1.0
    assert at(killed) - at(started) >= 2.0 - 0.01
    assert at(killed) <= at(finished)
    assert finished["exit_code"] == 3


def test_grandchildren_that_exit_on_the_stop_are_reaped_before_the_entrypoint_exits() -> None:
    """Dead but not reaped is not "none left": a zombie handed to the next reaper stays one."""
    with escaping_worker() as run:
        known = identities(escapes(run))
        with reaped_after(known):
            run.signal(signal.SIGTERM)
            assert run.wait(20) == 3
            assert alive(known) == []
            assert zombies(known) == []
    assert not run.events("descendants_killed")


def test_descendants_get_at_least_a_second_after_the_child_is_gone() -> None:
    """The child uses 0.8 s of a 1 s grace: the grandchildren still get a full second."""
    extra = ("--escape-ignore", str(ESCAPED), "--on-term", "finish", "--work", "0.8")
    with escaping_worker(*extra, stop_timeout="1") as run:
        known = identities(escapes(run))
        with reaped_after(known):
            run.signal(signal.SIGTERM)
            assert run.wait(20) == 3
            assert alive(known) == []
    (exited,) = run.events("child_exited")
    (killed,) = run.events("descendants_killed")
    assert killed["count"] == ESCAPED
    assert at(killed) - at(exited) >= 1.0 - 0.01


def test_a_stopped_descendant_is_continued_and_stops_gracefully() -> None:
    with escaping_worker("--escape-stopped", "2") as run:
        pids = escapes(run)
        known = identities(pids)
        stopped = [
            int(m.group(1)) for m in run.wait_stdout(r"^escaped stopping \(pid: (\d+)\)", count=2)
        ]
        sleep_until(
            lambda: all(procs.read_state(pid) is procs.State.STOPPED for pid in stopped), 10
        )
        with reaped_after(known):
            run.signal(signal.SIGTERM)
            assert run.wait(20) == 3
            assert alive(known) == []
    assert all(got_stop_signal(run, pid) for pid in pids)  # SIGCONT let the TERM in
    assert not run.events("descendants_killed")


FREEZER = Path("/sys/fs/cgroup/freezer")


@contextlib.contextmanager
def frozen(pid: int) -> Iterator[None]:
    """`pid` in a cgroup v1 freezer cgroup of its own, frozen: in D state, deaf even to SIGKILL.

    Thawed and removed after the block (the SIGKILL it got then ends it).
    """
    if os.geteuid() != 0 or not (FREEZER / "cgroup.procs").exists():
        missing("a frozen process needs root and the cgroup v1 freezer at /sys/fs/cgroup/freezer")
    directory = FREEZER / f"entrypoint-test-{os.getpid()}-{pid}"
    directory.mkdir()
    try:
        (directory / "cgroup.procs").write_text(str(pid))
        (directory / "freezer.state").write_text("FROZEN")
        sleep_until(lambda: procs.read_state(pid) is procs.State.UNINTERRUPTIBLE, 10)
        yield
    finally:
        (directory / "freezer.state").write_text("THAWED")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        sleep_until(lambda: not (directory / "cgroup.procs").read_text().split(), 10)
        directory.rmdir()


def test_a_descendant_that_cannot_die_is_reported_not_waited_for_forever() -> None:
    """A grandchild frozen in D state outlives even SIGKILL: the entrypoint names it and exits."""
    argv = [*CHILD, "--escape", "1", "--exit-code", "3"]
    env = base_env(MODE="worker", ENTRYPOINT_STOP_TIMEOUT="1")
    with Running([*ENTRYPOINT, "run", "--", *argv], env) as run:
        line = run.wait_stdout(r"^left 1 escaped: (\d+)", 30)[0]
        stuck = int(line.group(1))
        with frozen(stuck):
            run.signal(signal.SIGTERM)
            (left,) = run.wait_event("descendants_left", timeout=30)
            assert run.proc.wait(10) == 3  # bounded: it did not wait for the frozen one
            assert procs.read_state(stuck) is procs.State.UNINTERRUPTIBLE
    assert left["pids"] == [stuck]
    assert left["uninterruptible"] == [stuck]
    assert run.events("descendants_killed")[0]["count"] == 1
    assert run.events("stop_finished")[0]["exit_code"] == 3


def control_argv(wrapper: str) -> list[str]:
    argv = [*CHILD, "--escape", str(ESCAPED), "--exit-code", "3"]
    if wrapper == "tini":
        tini = shutil.which("tini")
        if tini is None:
            missing("tini is not installed")
        return [str(tini), "-s", "--", *argv]
    return ["sh", "-c", 'exec "$@"', "sh", *argv]


@pytest.mark.parametrize("wrapper", ["tini", "sh-exec"])
def test_control_without_the_sweep_the_grandchildren_survive_the_stop(wrapper: str) -> None:
    """Proves the test above can fail: the same worker under tini or a plain exec."""
    with Running(control_argv(wrapper), base_env()) as run:
        pids = escapes(run)
        known = identities(pids)
        with reaped_after(known):
            run.signal(signal.SIGTERM)
            # Not run.wait(): the survivors hold its output open.
            assert run.proc.wait(20) == 3
            assert sorted(alive(known)) == sorted(pids)
            # Those that do not ignore it never got the stop signal either.
            assert not any(got_stop_signal(run, pid) for pid in pids)


# --- as PID 1 -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def unshare() -> list[str]:
    argv = ["unshare", "--pid", "--fork", "--mount-proc"]
    if shutil.which("unshare") is None:
        missing("unshare (util-linux) is not installed")
    probe = subprocess.run([*argv, "true"], capture_output=True, text=True, timeout=10, check=False)
    if probe.returncode != 0:
        missing(f"cannot make a PID namespace here: {probe.stderr.strip()}")
    return argv


def namespace_init(run: Running) -> int:
    """The host pid of the namespace's PID 1: the child of `unshare --fork`."""
    found: list[int] = sleep_until(lambda: descendants(run.pid)[:1], 5)
    return found[0]


def test_as_pid1_every_escaped_grandchild_gets_the_stop_before_any_sigkill(
    unshare: list[str],
) -> None:
    argv = [*CHILD, "--escape", str(ESCAPED), "--escape-ignore", str(IGNORING), "--exit-code", "3"]
    env = base_env(MODE="worker", ENTRYPOINT_STOP_TIMEOUT="2")
    with Running([*unshare, *ENTRYPOINT, "run", "--", *argv], env) as run:
        init = namespace_init(run)
        pids = escapes(run)  # as the namespace numbers them
        os.kill(init, signal.SIGTERM)
        assert run.wait(20) == 3
    assert all(got_stop_signal(run, pid) for pid in pids)
    (killed,) = run.events("descendants_killed")
    assert killed["count"] == IGNORING


def test_control_tini_as_pid1_leaves_them_to_the_kernels_sigkill(unshare: list[str]) -> None:
    """Under tini as PID 1 the grandchildren die with it, by SIGKILL, never told to stop."""
    tini = shutil.which("tini")
    if tini is None:
        missing("tini is not installed")
    argv = [*CHILD, "--escape", str(ESCAPED), "--exit-code", "3"]
    with Running([*unshare, str(tini), "--", *argv], base_env()) as run:
        init = namespace_init(run)
        pids = escapes(run)
        os.kill(init, signal.SIGTERM)
        assert run.wait(20) == 3
    assert not any(got_stop_signal(run, pid) for pid in pids)


class ExitWatch:
    """strace on a process, holding back its exit_group() so that the test can look around.

    `entered` is set when the traced process enters exit_group(); its exit is
    delayed by `hold_s`. strace attaches from outside the PID namespace.
    """

    def __init__(self, pid: int, hold_s: float = 3.0) -> None:
        strace = shutil.which("strace")
        if strace is None:
            missing("strace is not installed")
        assert strace is not None
        delay = f"delay_enter={int(hold_s * 1e6)}"
        self.proc = subprocess.Popen(
            [
                strace,
                "-q",
                "-p",
                str(pid),
                "-e",
                "trace=exit_group",
                "-e",
                f"inject=exit_group:{delay}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.entered = threading.Event()
        self.attached = threading.Event()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        # strace says nothing once attached with -q: wait until the tracee shows its tracer.
        sleep_until(lambda: self._tracer_of(pid) == self.proc.pid, 10)

    @staticmethod
    def _tracer_of(pid: int) -> int:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("TracerPid:"):
                return int(line.split()[1])
        return 0

    def _read(self) -> None:
        # strace writes `exit_group(3` at the entry and ` = ?` only once it returns: read
        # bytes as they come, not lines.
        assert self.proc.stderr is not None
        fd = self.proc.stderr.fileno()
        while chunk := os.read(fd, 4096):
            self.output.append(chunk.decode(errors="replace"))
            if "exit_group(" in "".join(self.output):
                self.entered.set()

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        self.proc.wait(10)
        assert self.proc.stderr is not None
        self.proc.stderr.close()


def living_in_namespace(init: int) -> list[int]:
    """The host pids of the namespace's processes other than its PID 1, zombies aside."""
    return [p for p in descendants(init) if procs.read_state(p) not in (None, procs.State.ZOMBIE)]


@pytest.mark.parametrize("child_on_term", ["ignore", "exit"])
def test_as_pid1_the_entrypoint_exits_only_once_its_group_is_gone(
    unshare: list[str], child_on_term: str
) -> None:
    """500 TERM-ignoring members in the child's group, a 1 s grace, then SIGKILL.

    Its exit_group() is held back (strace): at that moment nothing of the
    namespace is alive but the entrypoint, and `stop_finished` came before.
    The child ignores TERM (it too dies by the stop's SIGKILL) or exits on it
    (its members are left, as descendants, to the sweep).
    """
    argv = [*CHILD, "--members", str(MEMBERS), "--on-term", child_on_term, "--exit-code", "3"]
    env = base_env(MODE="worker", ENTRYPOINT_STOP_TIMEOUT="1")
    with Running([*unshare, *ENTRYPOINT, "run", "--", *argv], env) as run:
        init = namespace_init(run)
        run.wait_stdout(r"^ready \(pid: 2\)", 30)
        assert len(living_in_namespace(init)) == MEMBERS + 1
        watch = ExitWatch(init)
        try:
            os.kill(init, signal.SIGTERM)
            assert watch.entered.wait(30), "".join(watch.output)
            left = living_in_namespace(init)
            # Written before the exit_group() that is held back.
            finished = run.wait_event("stop_finished", timeout=2)
        finally:
            watch.close()
        assert run.wait(20) == (128 + signal.SIGKILL if child_on_term == "ignore" else 3)
    assert left == []
    assert len(finished) == 1


def test_control_tini_as_pid1_exits_while_the_group_is_alive(unshare: list[str]) -> None:
    """Proves the check above can fail: tini -g exits with its child, the members still there."""
    tini = shutil.which("tini")
    if tini is None:
        missing("tini is not installed")
    argv = [*CHILD, "--members", str(MEMBERS), "--on-term", "exit", "--exit-code", "3"]
    with Running([*unshare, str(tini), "-g", "--", *argv], base_env()) as run:
        init = namespace_init(run)
        run.wait_stdout(r"^ready \(pid: 2\)", 30)
        watch = ExitWatch(init)
        try:
            os.kill(init, signal.SIGTERM)
            assert watch.entered.wait(30), "".join(watch.output)
            left = living_in_namespace(init)
        finally:
            watch.close()
        run.wait(20)
    assert len(left) == MEMBERS
