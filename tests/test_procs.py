"""/proc reading: stat lines as values, process trees as values, and real re-parented processes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from entrypoint.runtime import procs
from entrypoint.runtime.procs import ProcStat, State
from tests.proc_tree import ready_fields

ROOT = Path(__file__).resolve().parent.parent
TREE = [sys.executable, str(ROOT / "tests" / "proc_tree.py")]


def stat_line(stat: ProcStat, comm: str) -> bytes:
    """A /proc/PID/stat line as Linux 6 writes it (52 fields)."""
    after = [stat.state, stat.ppid, stat.pgid, stat.sid, 34816, stat.pgid, 4194560, 120, 0, 0, 0]
    after += [1, 0, 0, 0, 20, 0, 1, 0, stat.starttime, 2**23, stat.rss_pages, 2**64 - 1]
    after += [0] * 28
    return f"{stat.pid} ({comm}) {' '.join(map(str, after))}\n".encode()


def test_a_real_line() -> None:
    line = (
        b"4242 (python3) S 17 4242 17 34816 4242 4194560 1569 0 0 0 3 1 0 0 20 0 1 0 "
        b"9081726 24047616 2468 18446744073709551615 1 1 0 0 0 0 0 16781312 2 0 0 0 17 1 "
        b"0 0 0 0 0 0 0 0 0 0 0 0 0\n"
    )
    assert procs.parse_stat(line) == ProcStat(4242, "S", 17, 4242, 17, 9081726, 2468)


pids = st.integers(min_value=0, max_value=2**22)


@given(
    st.builds(
        ProcStat,
        pid=pids.map(lambda pid: pid + 1),
        state=st.sampled_from("RSDZTtXIP"),
        ppid=pids,
        pgid=pids,
        sid=pids,
        starttime=st.integers(min_value=0, max_value=2**63),
        rss_pages=st.integers(min_value=0, max_value=2**40),
    ),
    st.text(alphabet=st.sampled_from("ab )(:x 1\t"), max_size=15),
)
def test_any_command_name_is_read_past(stat: ProcStat, comm: str) -> None:
    """A command name may hold spaces and parentheses: fields count from the last `)`."""
    assert procs.parse_stat(stat_line(stat, comm)) == stat


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"12 (sh",
        b"12 (sh) S 1 2",
        b"x (sh) S 1 2 3" + b" 0" * 40,
        b"12 (sh) S one 2 3" + b" 0" * 40,
    ],
)
def test_a_cut_or_foreign_line_is_none(data: bytes) -> None:
    assert procs.parse_stat(data) is None


@pytest.mark.parametrize(
    ("letter", "state"),
    [
        ("R", State.RUNNING),
        ("S", State.RUNNING),
        ("I", State.RUNNING),
        ("D", State.UNINTERRUPTIBLE),
        ("T", State.STOPPED),
        ("t", State.STOPPED),
        ("Z", State.ZOMBIE),
        ("X", State.ZOMBIE),
        ("?", State.RUNNING),
    ],
)
def test_states(letter: str, state: State) -> None:
    assert procs.state_of(letter) is state


def proc(pid: int, ppid: int, pgid: int, rss: int = 1, state: str = "S") -> ProcStat:
    return ProcStat(pid, state, ppid, pgid, pgid, 0, rss)


# 1 entrypoint; 10 the child (group 10); 11, 12 its pool; 13 a setsid'd subprocess of 11
# and 14 its child; 20 a daemon re-parented to 1 in a session of its own; 21 a pool
# process whose master died, re-parented to 1 but still in group 10; 30 unrelated.
WORLD = [
    proc(1, 0, 1),
    proc(10, 1, 10),
    proc(11, 10, 10),
    proc(12, 10, 10, state="Z"),
    proc(13, 11, 13),
    proc(14, 13, 13),
    proc(20, 1, 20),
    proc(21, 1, 10),
    proc(30, 0, 30),
]


def test_the_group_tree_is_the_group_and_its_descendants() -> None:
    assert sorted(p.pid for p in procs.group_tree(WORLD, 10)) == [10, 11, 12, 13, 14, 21]
    assert sorted(p.pid for p in procs.group_tree(WORLD, 13)) == [13, 14]
    assert procs.group_tree(WORLD, 99) == []


def test_a_cycle_in_a_torn_scan_ends() -> None:
    """Pids reused during a scan may make parents loop: the walk still ends."""
    torn = [proc(5, 6, 5), proc(6, 5, 6)]
    assert sorted(p.pid for p in procs.group_tree(torn, 5)) == [5, 6]


def test_children_of_skip_the_known_and_the_dead() -> None:
    assert procs.children_of(WORLD, 1, known={10}) == [20, 21]
    assert procs.children_of(WORLD, 10) == [11]  # 12 is a zombie


def test_a_reaped_process_reads_as_none() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(10)
    assert procs.read_stat(child.pid) is None
    assert procs.read_state(child.pid) is None
    assert procs.read_state(os.getpid()) is State.RUNNING


def test_stopped_and_zombie_for_real() -> None:
    with subprocess.Popen(
        [sys.executable, "-c", "import os; os.read(0, 1)"], stdin=subprocess.PIPE
    ) as child:
        try:
            os.kill(child.pid, signal.SIGSTOP)
            # waitpid with WUNTRACED returns once it is stopped: an event, not a sleep.
            _, status = os.waitpid(child.pid, os.WUNTRACED)
            assert os.WIFSTOPPED(status)
            assert procs.read_state(child.pid) is State.STOPPED
            assert procs.states_of([child.pid, os.getpid()]) == {
                child.pid: State.STOPPED,
                os.getpid(): State.RUNNING,
            }
            os.kill(child.pid, signal.SIGKILL)
            # WNOWAIT leaves it a zombie: its exit is known, its entry is still there.
            os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
            assert procs.read_state(child.pid) is State.ZOMBIE
            child.wait(10)
            assert procs.states_of([child.pid]) == {}
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGKILL)


def test_process_group_members_for_real() -> None:
    with subprocess.Popen(
        [*TREE, "family", "1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, process_group=0
    ) as tree:
        try:
            assert tree.stdout is not None
            fields = ready_fields(tree.stdout.readline().decode())
            parent = int(fields["parent"])
            members = {int(pid) for pid in fields["member"].split(",")}
            assert sorted(procs.process_group_members(parent)) == sorted({parent, *members})
        finally:
            kill_tree(tree)


def kill_tree(tree: subprocess.Popen[bytes]) -> None:
    """SIGKILL the tree's group and the processes that left it; reap what is ours."""
    pids = [p.pid for p in procs.group_tree(procs.scan(), tree.pid)]
    with contextlib.suppress(ProcessLookupError):
        os.killpg(tree.pid, signal.SIGKILL)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    tree.wait(10)


@contextlib.contextmanager
def escaped(count: int) -> Iterator[tuple[int, int, set[int]]]:
    """A subreaper whose child left `count` processes re-parented to it.

    Yields (the subreaper's pid, its child's pid, the pids of the re-parented).
    """
    with subprocess.Popen(
        [*TREE, "escape", str(count)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    ) as run:
        assert run.stdout is not None
        them: set[int] = set()
        try:
            first = run.stdout.readline().decode().split()
            if first[:1] != ["subreaper"]:
                pytest.fail(f"the subreaper did not start: {first}")
            subreaper = int(first[1])
            while True:
                word, pid = run.stdout.readline().decode().split()
                if word == "done":
                    break
                them.add(int(pid))
            yield subreaper, int(pid), them
        finally:
            for each in them:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(each, signal.SIGKILL)
            run.kill()
            run.wait(10)


def test_reparented_to_lists_the_escaped() -> None:
    with escaped(20) as (subreaper, child, them):
        assert len(them) == 20
        found = procs.reparented_to(subreaper, known={child})
        assert sorted(found) == sorted(them)
        # They left the child's group and session: neither it nor its group holds them.
        assert procs.reparented_to(child) == []
        sessions = {stat.sid for stat in map(procs.read_stat, them) if stat is not None}
        assert len(sessions) == 20
        assert procs.read_stat(child).sid not in sessions  # type: ignore[union-attr]
        # Without `known` the child itself is listed too.
        assert sorted(procs.reparented_to(subreaper)) == sorted({*them, child})
