"""The entrypoint as PID 1 of a new PID namespace, as in a container (unshare)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess

import pytest

from tests.helpers import (
    CHILD,
    ENTRYPOINT,
    Running,
    base_env,
    descendants,
    exited,
    orphan_pids,
    sleep_until,
    wait_until,
    zombies_of,
)
from tests.servers import missing

ORPHANS = 50


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


def test_entrypoint_as_pid1_reaps_every_orphan(unshare: list[str]) -> None:
    argv = [*unshare, *ENTRYPOINT, "run", "--", *CHILD, "--orphans", str(ORPHANS)]
    with Running(argv, base_env(MODE="worker")) as run:
        init = namespace_init(run)
        run.wait_stdout(rf"^left {ORPHANS} orphans \(pid: 2\)")  # the child is PID 2
        with open(f"/proc/{init}/cmdline") as handle:
            assert "entrypoint" in handle.read()
        # Pids as the namespace numbers them; seen from here they are the init's descendants.
        assert len(orphan_pids(run)) == ORPHANS
        assert wait_until(lambda: not _living_descendants(init), 10)
        assert not zombies_of(init)


def test_control_a_pid1_that_never_waits_leaves_zombies(unshare: list[str]) -> None:
    """Proves the check above can fail: `sh -c 'exec "$@"'` makes the worker PID 1."""
    argv = [*unshare, "sh", "-c", 'exec "$@"', "sh", *CHILD, "--orphans", str(ORPHANS)]
    with Running(argv, base_env()) as run:
        init = namespace_init(run)
        run.wait_stdout(rf"^left {ORPHANS} orphans \(pid: 1\)")
        # Once none is alive any more, all of them stay zombies: nobody reaps them.
        assert wait_until(lambda: not _living_descendants(init), 10)
        assert len(zombies_of(init)) == ORPHANS


def test_pid1_stops_its_child_on_term_and_exits_with_its_status(unshare: list[str]) -> None:
    argv = [*unshare, *ENTRYPOINT, "run", "--", *CHILD, "--exit-code", "3"]
    with Running(argv, base_env(MODE="worker")) as run:
        init = namespace_init(run)
        run.wait_stdout(r"^ready \(pid: 2\)")
        os.kill(init, signal.SIGTERM)
        run.wait_stdout(r"^signal SIGTERM \(pid: 2\)")
        assert run.wait(10) == 3
        assert run.events("stop_finished")[0]["exit_code"] == 3


def test_pid1_term_during_a_slow_start_is_not_lost(unshare: list[str]) -> None:
    """TERM while the entrypoint is still starting: as PID 1 nothing may be dropped."""
    argv = [*unshare, *ENTRYPOINT, "run", "--", *CHILD]
    with Running(argv, base_env(MODE="worker", ENTRYPOINT_WAIT_FOR="tcp://127.0.0.1:1")) as run:
        init = namespace_init(run)
        run.wait_event("dependency_waiting")
        os.kill(init, signal.SIGTERM)
        assert run.wait(5) == 128 + signal.SIGTERM
        assert not run.events("child_started")


def _living_descendants(init: int) -> list[int]:
    """The namespace's processes, seen from here, that still run, the worker (its PID 2) aside."""
    return [pid for pid in descendants(init) if not exited(pid) and _namespace_pid(pid) != 2]


def _namespace_pid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("NSpid:"):
                    return int(line.split()[-1])
    except (OSError, ValueError):
        return None
    return None
