"""Processes as /proc shows them: parents, process groups, states, resident pages.

Read only: nothing here signals, waits for or reaps a process. A process may
exit while /proc is being read; its entry then vanishes (or reads empty), and
it is left out, never an error. Pids and parents are those of the PID
namespace /proc was mounted for (a container's own /proc, or `unshare
--mount-proc`).

One scan is one `listdir("/proc")` and one read of `/proc/PID/stat` per
process: `stat` alone carries the parent, the group, the state and the
resident pages, so a scan never opens a second file per process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable

PROC = "/proc"
# Longest possible stat line: 52 fields of at most 20 digits, and a 64-byte comm.
_STAT_MAX = 2048


class State(Enum):
    """What a signal can do to a process, from the state letter in /proc/PID/stat."""

    RUNNING = "running"
    """R, S, I and the rest: it acts on a signal as soon as it is delivered."""
    STOPPED = "stopped"
    """T, t: stopped (SIGSTOP, a tty) or traced; only SIGKILL acts before a SIGCONT."""
    UNINTERRUPTIBLE = "uninterruptible"
    """D: inside a kernel call that no signal interrupts, SIGKILL included (NFS, FUSE, a
    dying disk); it may never return, so waiting for it must have a deadline."""
    ZOMBIE = "zombie"
    """Z, X: it has exited and holds no memory; only its parent's wait removes it."""


@dataclass(frozen=True, slots=True)
class ProcStat:
    """The fields of one /proc/PID/stat line that the supervisor uses."""

    pid: int
    state: str
    ppid: int
    pgid: int
    sid: int
    starttime: int
    """Clock ticks after boot at which it started: with `pid`, names it across pid reuse."""
    rss_pages: int

    @property
    def condition(self) -> State:
        return state_of(self.state)


def state_of(letter: str) -> State:
    """The State of a /proc/PID/stat state letter (an unknown letter is RUNNING)."""
    if letter == "D":
        return State.UNINTERRUPTIBLE
    if letter in ("Z", "X", "x"):
        return State.ZOMBIE
    if letter in ("T", "t"):
        return State.STOPPED
    return State.RUNNING


def parse_stat(data: bytes) -> ProcStat | None:
    """One /proc/PID/stat line, or None when it is empty or cut short (the process exited).

    The command name (field 2, in parentheses) may itself hold spaces and
    parentheses, so the fields are counted from its LAST closing parenthesis.
    """
    head, paren, tail = data.rpartition(b")")
    if not paren:
        return None
    pid_text = head.partition(b" (")[0]
    fields = tail.split()
    # After the comm: state ppid pgrp session ... starttime (index 19) vsize rss (21).
    if len(fields) < 22 or not pid_text.isdigit():
        return None
    try:
        return ProcStat(
            pid=int(pid_text),
            state=fields[0].decode("ascii", "replace"),
            ppid=int(fields[1]),
            pgid=int(fields[2]),
            sid=int(fields[3]),
            starttime=int(fields[19]),
            rss_pages=max(0, int(fields[21])),
        )
    except ValueError:
        return None


def read_stat(pid: int | str) -> ProcStat | None:
    """The stat of one process, or None when it does not exist (any more)."""
    try:
        fd = os.open(f"{PROC}/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(fd, _STAT_MAX)
    except OSError:  # ESRCH: it exited between open and read
        return None
    finally:
        os.close(fd)
    return parse_stat(data)


def read_state(pid: int) -> State | None:
    """The State of `pid`, or None when it does not exist (it was reaped)."""
    stat = read_stat(pid)
    return stat.condition if stat is not None else None


def states_of(pids: Iterable[int]) -> dict[int, State]:
    """The State of each of `pids` that still exists (to name the ones a SIGKILL cannot end)."""
    found = {}
    for pid in pids:
        state = read_state(pid)
        if state is not None:
            found[pid] = state
    return found


def scan() -> list[ProcStat]:
    """Every process /proc lists now (thread group leaders: threads are not listed)."""
    found = []
    for name in os.listdir(PROC):
        if name.isdigit():
            stat = read_stat(name)
            if stat is not None:
                found.append(stat)
    return found


def group_tree(processes: Iterable[ProcStat], pgid: int) -> list[ProcStat]:
    """The members of process group `pgid` and every descendant of a member, in any group.

    A descendant that moved to a group or session of its own (setsid,
    `start_new_session=True`) still counts as long as its chain of parents
    leads back to a member. A process whose parent exited was re-parented
    (to the subreaper or PID 1): it is no longer anyone's descendant here,
    and counts only if it is itself still in the group. Zombies are included.
    """
    listed = list(processes)
    children: dict[int, list[ProcStat]] = {}
    for proc in listed:
        children.setdefault(proc.ppid, []).append(proc)
    chosen = {proc.pid: proc for proc in listed if proc.pgid == pgid}
    todo = list(chosen)
    while todo:
        for child in children.get(todo.pop(), ()):
            if child.pid not in chosen:
                chosen[child.pid] = child
                todo.append(child.pid)
    return list(chosen.values())


def living(processes: Iterable[ProcStat]) -> list[ProcStat]:
    return [proc for proc in processes if proc.condition is not State.ZOMBIE]


def process_group_members(pgid: int) -> list[int]:
    """The living (not zombie) processes whose process group is `pgid`."""
    return [proc.pid for proc in living(scan()) if proc.pgid == pgid]


def children_of(processes: Iterable[ProcStat], pid: int, known: Collection[int] = ()) -> list[int]:
    """The living processes whose parent is `pid`, except those in `known`."""
    return [
        proc.pid
        for proc in living(processes)
        if proc.ppid == pid and proc.pid not in known and proc.pid != pid
    ]


def reparented_to(pid: int, known: Collection[int] = ()) -> list[int]:
    """The living children of `pid` other than `known`, from /proc.

    Called with the entrypoint's own pid (PID 1 or a subreaper) and its
    child's pid as `known`, these are the descendants that outlived their
    parents and were re-parented to it. A zombie is left out: it is already
    dead, and the reap loop removes it. The list may be stale by the time it
    returns; on a stop, look again after every reap, because the children
    of a process that exits are re-parented in turn.
    """
    return children_of(scan(), pid, known)
