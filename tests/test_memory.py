"""Memory: cgroup files as values, a group's RSS from real processes, and a real OOM kill."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from entrypoint.runtime import memory, procs
from entrypoint.runtime.memory import Cgroup, CgroupLine, Mount
from tests.cgroups import limited_cgroup
from tests.proc_tree import ready_fields
from tests.servers import missing

ROOT = Path(__file__).resolve().parent.parent
TREE = [sys.executable, str(ROOT / "tests" / "proc_tree.py")]
MIB = 2**20
V1_NO_LIMIT = "9223372036854771712"


# --- /proc/self/cgroup -------------------------------------------------------------

HYBRID = """\
9:name=systemd:/
4:memory:/process_api/0c70d6413dcc
1:cpu,cpuacct:/
0::/
"""


def test_proc_cgroup_hybrid() -> None:
    assert memory.parse_proc_cgroup(HYBRID) == (
        CgroupLine(9, ("name=systemd",), "/"),
        CgroupLine(4, ("memory",), "/process_api/0c70d6413dcc"),
        CgroupLine(1, ("cpu", "cpuacct"), "/"),
        CgroupLine(0, (), "/"),
    )


def test_proc_cgroup_skips_what_is_not_a_cgroup_line() -> None:
    assert memory.parse_proc_cgroup("garbage\n\n4:memory\nx:memory:/a\n0::/ok\n") == (
        CgroupLine(0, (), "/ok"),
    )


cgroup_paths = st.lists(
    st.text(alphabet=st.sampled_from("abz09-_.:@ "), min_size=1, max_size=8), max_size=4
).map(lambda parts: "/" + "/".join(parts))
controller_names = st.lists(st.sampled_from(["memory", "cpu", "pids", "name=systemd"]), unique=True)


@given(st.lists(st.tuples(st.integers(0, 20), controller_names, cgroup_paths), max_size=6))
def test_proc_cgroup_round_trip(lines: list[tuple[int, list[str], str]]) -> None:
    text = "".join(f"{n}:{','.join(names)}:{path}\n" for n, names, path in lines)
    assert memory.parse_proc_cgroup(text) == tuple(
        CgroupLine(n, tuple(names), path) for n, names, path in lines
    )


# --- /proc/self/mountinfo ----------------------------------------------------------

MOUNTINFO_HYBRID = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""


def test_mountinfo() -> None:
    mounts = memory.parse_mountinfo(MOUNTINFO_HYBRID)
    assert mounts[2] == Mount("/", "/sys/fs/cgroup/memory", "cgroup", ("rw", "memory"))
    assert mounts[3] == Mount("/", "/sys/fs/cgroup/unified", "cgroup2", ("rw",))
    assert memory.parse_mountinfo("short line\n1 2 3 - x\n") == ()


@given(st.text(alphabet=st.sampled_from("ab/ \t\n\\x"), min_size=1, max_size=12))
def test_mountinfo_paths_are_unescaped(point: str) -> None:
    escaped = "".join(f"\\{ord(c):03o}" if c in " \t\n\\" else c for c in point)
    line = f"35 31 0:32 {escaped} /mnt/{escaped} rw - cgroup cgroup rw,memory\n"
    (mount,) = memory.parse_mountinfo(line)
    assert mount.root == point
    assert mount.mount_point == f"/mnt/{point}"


# --- which directory ---------------------------------------------------------------


def first(cgroup_text: str, mountinfo_text: str) -> Cgroup:
    found = memory.memory_cgroup_candidates(
        memory.parse_proc_cgroup(cgroup_text), memory.parse_mountinfo(mountinfo_text)
    )
    return found[0]


def test_hybrid_host_uses_the_v1_memory_hierarchy() -> None:
    assert first(HYBRID, MOUNTINFO_HYBRID) == Cgroup(
        1, "/sys/fs/cgroup/memory/process_api/0c70d6413dcc", "/sys/fs/cgroup/memory"
    )


def test_docker_v1_without_a_cgroup_namespace() -> None:
    """The path is the host's `/docker/ID`, and so is the root of the mount in the container."""
    cgroup = "12:memory:/docker/0123abcd\n0::/\n"
    mountinfo = (
        "700 690 0:32 /docker/0123abcd /sys/fs/cgroup/memory ro,nosuid - cgroup cgroup rw,memory\n"
    )
    assert first(cgroup, mountinfo) == Cgroup(1, "/sys/fs/cgroup/memory", "/sys/fs/cgroup/memory")


def test_kubernetes_v1_pod() -> None:
    path = "/kubepods/burstable/pod1234/abcdef"
    cgroup = f"4:memory:{path}\n"
    mountinfo = f"800 790 0:40 {path} /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
    assert first(cgroup, mountinfo).path == "/sys/fs/cgroup/memory"


def test_docker_v2_in_a_cgroup_namespace() -> None:
    """The path is `/`, and the container's own cgroup is what is mounted."""
    mountinfo = "600 590 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
    assert first("0::/\n", mountinfo) == Cgroup(2, "/sys/fs/cgroup", "/sys/fs/cgroup")


def test_v2_host() -> None:
    mountinfo = "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n"
    assert first("0::/system.slice/app.service\n", mountinfo) == Cgroup(
        2, "/sys/fs/cgroup/system.slice/app.service", "/sys/fs/cgroup"
    )


def test_v2_path_outside_the_namespace_falls_back_to_the_mount() -> None:
    mountinfo = "600 590 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
    found = memory.memory_cgroup_candidates(
        memory.parse_proc_cgroup("0::/../sibling\n"), memory.parse_mountinfo(mountinfo)
    )
    assert Cgroup(2, "/sys/fs/cgroup", "/sys/fs/cgroup") in found
    assert all(".." not in c.path or c.path.startswith("/sys/fs/cgroup") for c in found)


def test_no_mountinfo_falls_back_to_where_engines_mount_it() -> None:
    found = memory.memory_cgroup_candidates(memory.parse_proc_cgroup("0::/app\n"), ())
    assert found[0] == Cgroup(2, "/sys/fs/cgroup/app", "/sys/fs/cgroup")
    assert Cgroup(2, "/sys/fs/cgroup", "/sys/fs/cgroup") in found
    v1 = memory.memory_cgroup_candidates(memory.parse_proc_cgroup("3:memory:/\n"), ())
    assert v1[0] == Cgroup(1, "/sys/fs/cgroup/memory", "/sys/fs/cgroup/memory")


def test_no_memory_line_no_cgroup() -> None:
    assert memory.memory_cgroup_candidates(memory.parse_proc_cgroup("1:cpu:/\n"), ()) == ()


# --- limits and counters -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "limit"),
    [
        ("max\n", None),
        (f"{V1_NO_LIMIT}\n", None),
        ("9223372036854710272", None),  # 64 KiB pages
        ("67108864\n", 64 * MIB),
        ("0", 0),
    ],
)
def test_limits(text: str, limit: int | None) -> None:
    assert memory.parse_limit(text) == limit


@given(st.integers(min_value=0, max_value=2**64))
def test_limit_numbers(number: int) -> None:
    assert memory.parse_limit(f"{number}\n") == (number if number < 2**62 else None)


@pytest.mark.parametrize("text", ["", "lots", "-1", "1.5", "１"])  # noqa: RUF001 - fullwidth digit
def test_a_limit_that_is_not_a_number_raises(text: str) -> None:
    with pytest.raises(ValueError, match="not a memory limit"):
        memory.parse_limit(text)


def test_memory_events() -> None:
    text = "low 0\nhigh 12\nmax 40\noom 3\noom_kill 2\noom_group_kill 0\n"
    assert memory.parse_memory_events(text)["oom_kill"] == 2
    assert memory.parse_memory_events(text)["max"] == 40


def test_oom_control() -> None:
    assert memory.parse_oom_control("oom_kill_disable 0\nunder_oom 0\noom_kill 7\n") == {
        "oom_kill_disable": 0,
        "under_oom": 0,
        "oom_kill": 7,
    }
    assert "oom_kill" not in memory.parse_oom_control("oom_kill_disable 0\nunder_oom 0\n")


@given(
    st.dictionaries(
        st.text(alphabet=st.sampled_from("abcdefghijklmnopqrstuvwxyz_"), min_size=1, max_size=16),
        st.integers(min_value=0, max_value=2**64),
    )
)
def test_flat_keyed_round_trip(values: dict[str, int]) -> None:
    text = "".join(f"{name} {value}\n" for name, value in values.items())
    assert memory.parse_memory_events(text) == values
    assert memory.parse_oom_control(text) == values


def test_tightest_and_ancestors() -> None:
    assert memory.tightest([None, 5, 3, None]) == 3
    assert memory.tightest([None, None]) is None
    assert memory.ancestors("/c/a/b", "/c") == ("/c/a/b", "/c/a", "/c")
    assert memory.ancestors("/c", "/c") == ("/c",)
    assert memory.ancestors("/elsewhere", "/c") == ("/elsewhere",)


def write_files(directory: Path, files: dict[str, str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)


def test_v2_limit_is_the_smallest_up_to_the_mount(tmp_path: Path) -> None:
    top = tmp_path / "cgroup"
    write_files(top, {})  # the root cgroup has no memory.max
    write_files(top / "pod", {"memory.max": "1073741824\n"})
    write_files(top / "pod" / "app", {"memory.max": "max\n", "memory.events": "oom_kill 4\n"})
    cgroup = Cgroup(2, str(top / "pod" / "app"), str(top))
    assert memory.memory_limit(cgroup) == 2**30
    assert memory.oom_kills(cgroup) == 4
    (top / "pod" / "app" / "memory.max").write_text("536870912\n")
    assert memory.memory_limit(cgroup) == 2**29


def test_v1_limit_takes_the_hierarchical_one(tmp_path: Path) -> None:
    write_files(
        tmp_path,
        {
            "memory.limit_in_bytes": V1_NO_LIMIT,
            "memory.stat": (
                "cache 0\nhierarchical_memory_limit 268435456\n"
                f"hierarchical_memsw_limit {V1_NO_LIMIT}\n"
            ),
            "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
        },
    )
    cgroup = Cgroup(1, str(tmp_path), str(tmp_path))
    assert memory.memory_limit(cgroup) == 256 * MIB
    assert memory.oom_kills(cgroup) == 1
    (tmp_path / "memory.stat").write_text(f"hierarchical_memory_limit {V1_NO_LIMIT}\n")
    assert memory.memory_limit(cgroup) is None


def test_v1_oom_kills_add_the_sub_cgroups(tmp_path: Path) -> None:
    """v1 counts each cgroup's own kills: a child in a sub-cgroup is still this cgroup's."""
    control = "oom_kill_disable 0\nunder_oom 0\noom_kill {}\n"
    write_files(tmp_path, {"memory.oom_control": control.format(2)})
    write_files(tmp_path / "a", {"memory.oom_control": control.format(3)})
    write_files(tmp_path / "a" / "b", {"memory.oom_control": control.format(5)})
    write_files(tmp_path / "c", {})
    assert memory.oom_kills(Cgroup(1, str(tmp_path), str(tmp_path))) == 10
    assert memory.oom_kills(Cgroup(1, str(tmp_path / "a"), str(tmp_path))) == 8
    (tmp_path / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\n")
    assert memory.oom_kills(Cgroup(1, str(tmp_path), str(tmp_path))) is None  # before 4.13


@pytest.mark.parametrize(
    ("signal_number", "before", "after", "oom"),
    [
        (signal.SIGKILL, 0, 1, True),
        (signal.SIGKILL, 3, 5, True),
        (signal.SIGKILL, 1, 1, False),
        (signal.SIGTERM, 0, 1, False),
        (None, 0, 1, False),
        (signal.SIGKILL, None, 1, False),
        (signal.SIGKILL, 0, None, False),
        (signal.SIGKILL, 2, 0, False),  # a v1 sub-cgroup removed meanwhile
    ],
)
def test_was_oom_kill(
    signal_number: int | None, before: int | None, after: int | None, oom: bool
) -> None:
    assert memory.was_oom_kill(signal_number, before, after) is oom


def test_unreadable_or_garbled_files_are_unknown(tmp_path: Path) -> None:
    write_files(tmp_path, {"memory.max": "garbage", "memory.events": "oom_kill lots\n"})
    for version in (1, 2):
        cgroup = Cgroup(version, str(tmp_path), str(tmp_path))
        assert memory.memory_limit(cgroup) is None
        assert memory.oom_kills(cgroup) is None
    gone = Cgroup(2, str(tmp_path / "gone"), str(tmp_path))
    assert memory.memory_limit(gone) is None
    assert memory.oom_kills(gone) is None


def test_find_cgroup_here() -> None:
    """This machine's own cgroup: found, and its files read (whatever their values)."""
    cgroup = memory.find_cgroup()
    if cgroup is None:
        missing("this process has no memory cgroup to read (no memory controller)")
    assert cgroup is not None
    assert os.path.isdir(cgroup.path)
    kills = memory.oom_kills()
    assert kills is None or kills >= 0
    limit = memory.memory_limit()
    assert limit is None or limit > 0


# --- group_rss with real processes ----------------------------------------------------


@contextlib.contextmanager
def tree(*args: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`proc_tree.py ARGS` in a process group of its own; its first line; killed after."""
    with subprocess.Popen(
        [*TREE, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, process_group=0
    ) as run:
        assert run.stdout is not None
        try:
            yield run, run.stdout.readline().decode()
        finally:
            pids = [p.pid for p in procs.group_tree(procs.scan(), run.pid)]
            with contextlib.suppress(ProcessLookupError):
                os.killpg(run.pid, signal.SIGKILL)
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            run.wait(10)


def test_group_rss_of_a_child_holding_150_mib() -> None:
    with tree("alloc", "150") as (run, line):
        assert line.startswith("ready")
        rss = memory.group_rss(run.pid)
        assert 150 * MIB <= rss < 250 * MIB


def rss_of(pid: int) -> int:
    stat = procs.read_stat(pid)
    assert stat is not None
    return stat.rss_pages * memory.PAGE_SIZE


def test_group_rss_counts_descendants_that_left_the_group_not_orphans() -> None:
    with tree("family", "50") as (run, line):
        fields = ready_fields(line)
        parent, left, orphan = (int(fields[name]) for name in ("parent", "left", "orphan"))
        members = [int(pid) for pid in fields["member"].split(",")]
        assert parent == run.pid
        rss = memory.group_rss(parent)
        in_group = sum(map(rss_of, [parent, *members]))
        # The setsid'd child is counted (its parent is a member) ...
        assert rss - in_group >= 50 * MIB
        assert rss >= 150 * MIB
        # ... and the orphan, re-parented elsewhere in a session of its own, is not.
        assert rss_of(orphan) >= 200 * MIB
        assert rss < 150 * MIB + 200 * MIB
        assert orphan not in {p.pid for p in procs.group_tree(procs.scan(), parent)}
        assert left in {p.pid for p in procs.group_tree(procs.scan(), parent)}


def test_group_rss_of_no_group_is_zero() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"], process_group=0)
    child.wait(10)
    assert memory.group_rss(child.pid) == 0


def test_processes_vanishing_during_the_read_never_raise() -> None:
    with tree("churn") as (run, line):
        assert line.startswith("ready")
        seen: set[int] = set()
        gone: set[int] = set()
        samples = 0
        deadline = time.monotonic() + 30
        # Read until children were seen alive and then gone at least 20 times (or the deadline).
        while len(gone) < 20 and time.monotonic() < deadline:
            assert memory.group_rss(run.pid) > 0
            assert run.pid in procs.process_group_members(run.pid)
            procs.reparented_to(os.getpid())
            seen.update(p.pid for p in procs.group_tree(procs.scan(), run.pid) if p.pid != run.pid)
            gone.update(pid for pid in seen if procs.read_stat(pid) is None)
            samples += 1
        assert len(gone) >= 20, f"{len(seen)} children seen in {samples} samples"


# --- a real OOM kill ------------------------------------------------------------------


def test_an_oom_kill_is_counted_and_the_victim_dies_of_sigkill() -> None:
    with limited_cgroup(64 * MIB) as (outer, inner):
        outer_before = memory.oom_kills(outer)
        out = subprocess.run(
            [*TREE, "oom", str(inner)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert out.returncode == 0, out.stderr
        seen = json.loads(out.stdout)
        outer_after = memory.oom_kills(outer)
    assert seen["cgroup"] == str(inner)
    assert seen["signal"] == signal.SIGKILL, seen
    assert isinstance(seen["before"], int)
    assert seen["after"] == seen["before"] + 1
    assert seen["limit"] == 64 * MIB  # from the parent: v1 hierarchical, v2 ancestors
    # Read from above, the kill counts too (v2 counts up the tree; v1 adds the sub-cgroups).
    assert outer_before is not None
    assert outer_after == outer_before + 1
