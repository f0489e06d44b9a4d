"""Memory as the kernel accounts it: a process group's resident set, the cgroup's limit
and its count of OOM kills.

The readers touch /proc and /sys/fs/cgroup only when called (the supervisor
calls them from a Loop timer, and only while the feature that needs them is
on); they never raise for a file that is absent or unreadable: they answer
None (or leave the process out). The parsers are pure functions of a file's
text, tested as values.

Which cgroup: the one the entrypoint itself is in, found from
/proc/self/cgroup and /proc/self/mountinfo. Its child, and every process the
child starts, stays in that cgroup (nothing here moves processes), so its
limit and its OOM counter are the child's.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from typing import TYPE_CHECKING

from entrypoint.runtime import procs

if TYPE_CHECKING:
    from collections.abc import Iterable

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
# cgroup v1 writes "no limit" as the largest page-aligned count of bytes
# (9223372036854771712 with 4 KiB pages); no machine has 4 EiB of memory.
NO_LIMIT_FROM = 2**62


def group_rss(pgid: int) -> int:
    """The summed resident set (bytes) of process group `pgid` and its members' descendants.

    What counts is `procs.group_tree`: every process in the group (a prefork
    pool stays in its master's group) and every descendant of one of them,
    even in a group or session of its own (a worker's subprocess started with
    `start_new_session=True`). A daemon whose parent exited was re-parented
    to the entrypoint: it no longer counts (restarting the child would not
    free its memory, and counting it would recycle the child again and
    again); the stop's sweep of re-parented processes ends it.

    Pages shared between processes (copy-on-write after a fork, shared
    libraries) count once per process, as `ps` sums RSS: a prefork pool
    reads larger than the memory it really pins. A group that no longer
    exists sums to 0.
    """
    return sum(proc.rss_pages for proc in procs.group_tree(procs.scan(), pgid)) * PAGE_SIZE


@dataclass(frozen=True, slots=True)
class CgroupLine:
    """One line of /proc/PID/cgroup: `hierarchy:controllers:path`."""

    hierarchy: int
    controllers: tuple[str, ...]
    path: str


@dataclass(frozen=True, slots=True)
class Mount:
    """The fields of one /proc/PID/mountinfo line that locate a cgroup hierarchy."""

    root: str
    """The directory of the filesystem mounted here: a cgroup path, for a cgroup mount."""
    mount_point: str
    fstype: str
    super_options: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Cgroup:
    """Where this process's memory controller is: its directory, and the mount above it."""

    version: int
    path: str
    mount_point: str


def parse_proc_cgroup(text: str) -> tuple[CgroupLine, ...]:
    """/proc/PID/cgroup; lines that are not `number:controllers:path` are skipped.

    The path may itself hold colons; `0::/path` is the cgroup v2 line.
    """
    lines = []
    for line in text.splitlines():
        number, sep1, rest = line.partition(":")
        controllers, sep2, path = rest.partition(":")
        if not (sep1 and sep2 and number.isdigit() and path.startswith("/")):
            continue
        names = tuple(name for name in controllers.split(",") if name)
        lines.append(CgroupLine(int(number), names, path))
    return tuple(lines)


def _unescape(field: str) -> str:
    """A mountinfo path field: space, tab, newline and backslash come as octal escapes."""
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        code = field[i + 1 : i + 4]
        if field[i] == "\\" and len(code) == 3 and all(c in "01234567" for c in code):
            out.append(chr(int(code, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> tuple[Mount, ...]:
    """/proc/PID/mountinfo; malformed lines are skipped.

    `id parent major:minor root mount_point options [optional...] - fstype source super_options`
    """
    mounts = []
    for line in text.splitlines():
        fields = line.split(" ")
        if "-" not in fields:
            continue
        dash = fields.index("-")
        if dash < 6 or len(fields) < dash + 4:
            continue
        mounts.append(
            Mount(
                root=_unescape(fields[3]),
                mount_point=_unescape(fields[4]),
                fstype=fields[dash + 1],
                super_options=tuple(fields[dash + 3].split(",")),
            )
        )
    return tuple(mounts)


def _under(path: str, root: str) -> str | None:
    """`path` relative to `root` ("" for root itself, "/a/b" below it), or None outside it."""
    if root == "/":
        return "" if path == "/" else path
    if path == root:
        return ""
    if path.startswith(root + "/"):
        return path[len(root) :]
    return None


def memory_cgroup_candidates(
    lines: Iterable[CgroupLine], mounts: Iterable[Mount]
) -> tuple[Cgroup, ...]:
    """Where the memory controller of a process with these cgroup lines may be, best first.

    The v1 `memory` hierarchy when one is listed (the controller is bound to
    one hierarchy only, so a hybrid host's `0::` line then has no memory
    files), else the v2 line. The path is taken relative to the mount's root:
    inside a cgroup namespace the path is `/` and the container's cgroup is
    the mount itself; without one (Docker on v1) the path is the full
    `/docker/ID` and so is the mount's root. The mount point itself comes
    last, for a path outside every mount's root (a process moved out of its
    namespace) or a directory that is not there.
    """
    listed = list(lines)
    mounts = list(mounts)
    v1 = next((line for line in listed if "memory" in line.controllers), None)
    if v1 is not None:
        version, path = 1, v1.path
        chosen = [m for m in mounts if m.fstype == "cgroup" and "memory" in m.super_options]
        fallback = ["/sys/fs/cgroup/memory"]
    else:
        v2 = next((line for line in listed if line.hierarchy == 0 and not line.controllers), None)
        if v2 is None:
            return ()
        version, path = 2, v2.path
        chosen = [m for m in mounts if m.fstype == "cgroup2"]
        fallback = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
    found: list[Cgroup] = []
    # Mounts whose root holds the path, the deepest root first (a bind mount of a subtree).
    for mount in sorted(chosen, key=lambda m: -len(m.root)):
        relative = _under(path, mount.root)
        if relative is not None:
            found.append(Cgroup(version, mount.mount_point + relative, mount.mount_point))
    tops = [m.mount_point for m in chosen]
    if not tops:  # no mountinfo to go by: where hosts and engines mount it
        tops = fallback
        found += [Cgroup(version, top + ("" if path == "/" else path), top) for top in tops]
    found += [Cgroup(version, top, top) for top in tops]
    return tuple(dict.fromkeys(found))


def parse_limit(text: str) -> int | None:
    """A limit file (v2 `memory.max`, v1 `memory.limit_in_bytes`): bytes, or None for none.

    `max` (v2) and v1's page-aligned maximum (anything from 2**62 up) mean no
    limit. Anything else that is not a whole number raises ValueError.
    """
    value = text.strip()
    if value == "max":
        return None
    if not (value.isascii() and value.isdigit()):
        raise ValueError(f"not a memory limit: {value[:40]!r}")
    number = int(value)
    return None if number >= NO_LIMIT_FROM else number


def parse_flat_keyed(text: str) -> dict[str, int]:
    """A `name value` per line file (memory.events, memory.oom_control, memory.stat).

    Lines whose value is not a whole number are skipped.
    """
    values = {}
    for line in text.splitlines():
        name, _, value = line.strip().partition(" ")
        value = value.strip()
        if name and value.lstrip("-").isdigit() and value.isascii():
            values[name] = int(value)
    return values


def parse_memory_events(text: str) -> dict[str, int]:
    """cgroup v2 `memory.events`: low, high, max, oom, oom_kill, oom_group_kill..."""
    return parse_flat_keyed(text)


def parse_oom_control(text: str) -> dict[str, int]:
    """cgroup v1 `memory.oom_control`: oom_kill_disable, under_oom, oom_kill (Linux 4.13+)."""
    return parse_flat_keyed(text)


def tightest(limits: Iterable[int | None]) -> int | None:
    """The smallest of the limits that are set, or None when none is."""
    return min((limit for limit in limits if limit is not None), default=None)


def ancestors(path: str, top: str) -> tuple[str, ...]:
    """`path` and each parent directory up to and including `top` (`path` when not under it)."""
    if _under(path, top) is None:
        return (path,)
    found = [path]
    while path != top and len(path) > len(top):
        path = os.path.dirname(path)
        found.append(path)
    return tuple(found)


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None


def _read_proc_self(name: str) -> str:
    return _read(f"{procs.PROC}/self/{name}") or ""


def find_cgroup() -> Cgroup | None:
    """The memory cgroup of this process, or None when there is none to read.

    The first candidate of `memory_cgroup_candidates` whose directory holds
    the version's memory files (`memory.max` or `memory.events` for v2,
    `memory.limit_in_bytes` for v1). Call it once: a process's cgroup does
    not change unless someone moves it.
    """
    lines = parse_proc_cgroup(_read_proc_self("cgroup"))
    mounts = parse_mountinfo(_read_proc_self("mountinfo"))
    for candidate in memory_cgroup_candidates(lines, mounts):
        marker = (
            ("memory.max", "memory.events")
            if candidate.version == 2
            else ("memory.limit_in_bytes",)
        )
        if any(os.path.exists(os.path.join(candidate.path, name)) for name in marker):
            return candidate
    return None


def _limit_at(path: str, name: str) -> int | None:
    text = _read(os.path.join(path, name))
    if text is None:
        return None
    try:
        return parse_limit(text)
    except ValueError:
        return None


def memory_limit(cgroup: Cgroup | None = None) -> int | None:
    """The memory limit (bytes) this cgroup lives under, or None when there is none.

    v2: the smallest `memory.max` of the cgroup and of each parent up to the
    mount (inside a cgroup namespace that is the container's own cgroup:
    limits above it are not visible). v1: the smaller of
    `memory.limit_in_bytes` and `memory.stat`'s `hierarchical_memory_limit`
    (which the kernel computes over every ancestor). `cgroup` defaults to
    `find_cgroup()`.
    """
    cgroup = cgroup or find_cgroup()
    if cgroup is None:
        return None
    if cgroup.version == 2:
        return tightest(
            _limit_at(path, "memory.max") for path in ancestors(cgroup.path, cgroup.mount_point)
        )
    stat = parse_flat_keyed(_read(os.path.join(cgroup.path, "memory.stat")) or "")
    hierarchical = stat.get("hierarchical_memory_limit")
    return tightest(
        (
            _limit_at(cgroup.path, "memory.limit_in_bytes"),
            None if hierarchical is None or hierarchical >= NO_LIMIT_FROM else hierarchical,
        )
    )


def oom_kills(cgroup: Cgroup | None = None) -> int | None:
    """How many processes of this cgroup and its descendants the OOM killer has killed.

    None when unknown (no memory controller, or v1 before Linux 4.13). v2:
    `memory.events` `oom_kill`, which the kernel counts up the tree. v1:
    `memory.oom_control` `oom_kill` counts its own cgroup only, so the
    descendants' are added (a sub-cgroup removed meanwhile takes its count
    with it). The kernel counts a kill before it sends the SIGKILL, so a
    child seen dead of SIGKILL is already counted. Kills by the host's own
    OOM killer count too. `cgroup` defaults to `find_cgroup()`.
    """
    cgroup = cgroup or find_cgroup()
    if cgroup is None:
        return None
    if cgroup.version == 2:
        events = parse_memory_events(_read(os.path.join(cgroup.path, "memory.events")) or "")
        return events.get("oom_kill")
    own = _v1_oom_kills(cgroup.path)
    if own is None:
        return None
    for top, directories, _ in os.walk(cgroup.path):
        own += sum(_v1_oom_kills(os.path.join(top, name)) or 0 for name in directories)
    return own


def _v1_oom_kills(path: str) -> int | None:
    return parse_oom_control(_read(os.path.join(path, "memory.oom_control")) or "").get("oom_kill")


def was_oom_kill(
    signal_number: int | None, kills_before: int | None, kills_after: int | None
) -> bool:
    """Whether a child that died of `signal_number` was killed by the OOM killer.

    True when it died of SIGKILL and the cgroup's count went up since
    `kills_before` (read just before the child was started). The caller
    asks only about a SIGKILL it did not send itself: its own stop reasons
    come first. Another process of the cgroup killed meanwhile (a pool
    worker) makes a SIGKILL from someone else read as an OOM kill too.
    """
    return (
        signal_number == signal.SIGKILL
        and kills_before is not None
        and kills_after is not None
        and kills_after > kills_before
    )
