"""Replicas of `entrypoint run` as real processes, and what their children wrote down.

A `Cluster` starts replicas of one configuration (one lease key, one store),
each a `python -m entrypoint run` with its own state file and log. Their
children are `tests/lease_child.py`, which append `start` and `stop` lines to
one shared file with their CLOCK_MONOTONIC times: `Cluster.runs()` rebuilds
from it when each child ran, with which flag and token. The test also plays
the world: `freeze` (SIGSTOP of the supervisor and every process under it, as
`docker pause` does), `thaw`, `kill_container` (SIGKILL of all of it, as
`docker kill` does), and keeps the times, so that a frozen child does not
count as acting and a killed one ends when it was seen dead.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tests.helpers import ROOT, base_env, descendants, wait_until
from tests.servers import require_server

if TYPE_CHECKING:
    from pathlib import Path

LEASE_CHILD = str(ROOT / "tests" / "lease_child.py")
FLAG = "ENABLE_SCHEDULER"

BACKENDS = {
    "redis": ("redis://{host}:{port}/0", "/0", ""),
    "postgresql": ("postgresql://postgres@{host}:{port}/test", "/test", "postgres"),
}

Interval = tuple[float, float]


def store_url(backend: str) -> str:
    host, port = require_server(backend)
    return BACKENDS[backend][0].format(host=host, port=port)


@dataclass
class Run:
    """One child, as it wrote itself down (and as the test saw it die, when killed)."""

    pid: int
    supervisor: int
    flag: str  # the leader's flag as the child saw it: "true", "false", or "-" when unset
    token: int | None
    start: float
    end: float | None = None  # None: still running
    frozen: list[Interval] = field(default_factory=list)

    def acting(self, now: float) -> list[Interval]:
        """When the child could act: from its start to its end, less the times it was frozen."""
        spans = [(self.start, self.end if self.end is not None else now)]
        for cold_from, cold_to in self.frozen:
            cut: list[Interval] = []
            for begin, end in spans:
                if cold_to <= begin or cold_from >= end:
                    cut.append((begin, end))
                    continue
                if begin < cold_from:
                    cut.append((begin, cold_from))
                if cold_to < end:
                    cut.append((cold_to, end))
            spans = cut
        return spans


def overlap(first: Run, second: Run, now: float) -> float:
    """How long both children could act at the same time, in seconds."""
    total = 0.0
    for a_begin, a_end in first.acting(now):
        for b_begin, b_end in second.acting(now):
            total += max(0.0, min(a_end, b_end) - max(a_begin, b_begin))
    return total


@dataclass
class Replica:
    index: int
    proc: subprocess.Popen[bytes]
    log: Path
    state_file: Path
    frozen_since: float | None = None
    frozen_pids: set[int] = field(default_factory=set)  # the processes under it now stopped

    @property
    def pid(self) -> int:
        return self.proc.pid

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        found = []
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        for line in text.splitlines():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict) and (name is None or event.get("event") == name):
                    found.append(event)
        return found

    def state(self) -> dict[str, Any]:
        try:
            value = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}
        return value if isinstance(value, dict) else {}


@dataclass
class Cluster:
    """Replicas that share one lease (or handoff) key in one store."""

    tmp: Path
    backend: str
    url: str
    env: dict[str, str]
    key: str = field(default_factory=lambda: f"test:one:{uuid.uuid4().hex}")
    replicas: list[Replica] = field(default_factory=list)
    killed: dict[int, float] = field(default_factory=dict)  # child pid -> seen dead at
    freezes: dict[int, list[Interval]] = field(default_factory=dict)  # child pid -> frozen spans
    wall_offset: float = field(default_factory=lambda: time.time() - time.monotonic())

    @property
    def record(self) -> Path:
        return self.tmp / "children.log"

    def start(self, url: str | None = None, **extra: str) -> Replica:
        """One more replica; `url` instead of the cluster's store (a proxy, say).

        The store is given as ENTRYPOINT_LEASE_URL, unless the cluster's
        environment has a QUEUE_URL (the store then defaults to it).
        """
        index = len(self.replicas)
        log = self.tmp / f"replica-{index}.log"
        env = base_env(
            ENTRYPOINT_STATE_FILE=str(self.state_file(index)),
            **{"ENTRYPOINT_LOG_LEVEL": "debug", **self.env, **extra},
        )
        if url is not None or "QUEUE_URL" not in env:
            env["ENTRYPOINT_LEASE_URL"] = url or self.url
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "entrypoint", "run"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        replica = Replica(index, proc, log, self.state_file(index))
        self.replicas.append(replica)
        return replica

    def state_file(self, index: int) -> Path:
        return self.tmp / f"state-{index}.json"

    # -- what the children wrote

    def runs(self, *, logs: bool = True) -> list[Run]:
        """Every child that wrote `start`, in start order.

        With `logs` False the supervisors' logs are not read: a child that
        died without its `stop` line (SIGKILL at the end of a stop) still
        looks running. Cheaper, for a guess at who leads.
        """
        text = self.record.read_text() if self.record.exists() else ""
        lines = text.split("\n")[:-1]  # the last one may be still being written
        runs: dict[int, Run] = {}
        for line in lines:
            word, *fields = line.split()
            if word == "start":
                pid, supervisor, flag, token, stamp = fields
                runs[int(pid)] = Run(
                    int(pid),
                    int(supervisor),
                    flag,
                    None if token == "-" else int(token),
                    float(stamp),
                )
            elif word == "stop" and int(fields[0]) in runs:
                runs[int(fields[0])].end = float(fields[1])
        exited_at = self._exits() if logs else {}
        for run in runs.values():
            if run.end is None:
                run.end = self.killed.get(run.pid, exited_at.get(run.pid))
            run.frozen = list(self.freezes.get(run.pid, []))
        return sorted(runs.values(), key=lambda run: run.start)

    def _exits(self) -> dict[int, float]:
        """child pid -> when its supervisor logged `child_exited`, on the monotonic clock.

        For a child that died without its `stop` line (SIGKILL at the end of a
        stop): later than its real end, so overlaps come out longer, not shorter.
        """
        found = {}
        for replica in self.replicas:
            for event in replica.events("child_exited"):
                stamp = datetime.fromisoformat(event["timestamp"]).timestamp()
                found[int(event["pid"])] = stamp - self.wall_offset
        return found

    def monotonic(self, event: dict[str, Any]) -> float:
        """An event's timestamp on the monotonic clock of the children's lines."""
        return datetime.fromisoformat(event["timestamp"]).timestamp() - self.wall_offset

    def running(self) -> list[Run]:
        return [run for run in self.runs() if run.end is None]

    def leaders(self) -> list[Run]:
        """The children running with the leader's flag true."""
        return [run for run in self.running() if run.flag == "true"]

    def replica_of(self, run: Run) -> Replica:
        return next(r for r in self.replicas if r.pid == run.supervisor)

    def started_after(self, moment: float, flag: str | None = None) -> list[Run]:
        return [r for r in self.runs() if r.start > moment and (flag is None or r.flag == flag)]

    def max_overlap(self, flag: str | None = None) -> tuple[float, Run | None, Run | None]:
        """The longest time two children (with `flag`, when given) could act at once."""
        now = time.monotonic()
        runs = [r for r in self.runs() if flag is None or r.flag == flag]
        worst: tuple[float, Run | None, Run | None] = (0.0, None, None)
        for i, first in enumerate(runs):
            for second in runs[i + 1 :]:
                both = overlap(first, second, now)
                if both > worst[0]:
                    worst = (both, first, second)
        return worst

    # -- playing the world

    def children_of(self, replica: Replica) -> list[int]:
        return descendants(replica.pid)

    def freeze(self, replica: Replica) -> float:
        """SIGSTOP the supervisor and everything under it (what the cgroup freezer does).

        Each child's frozen span starts once its own SIGSTOP was sent: until
        then it could still act. Returns when the supervisor was stopped.
        """
        known = self.children_of(replica)
        with contextlib.suppress(ProcessLookupError):
            os.kill(replica.pid, signal.SIGSTOP)
        at = time.monotonic()
        stopped: set[int] = set()
        for pids in (known, None):  # then a child forked just before the supervisor stopped
            for pid in pids if pids is not None else self.children_of(replica):
                if pid in stopped:
                    continue
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP)
                stopped.add(pid)
                replica.frozen_pids.add(pid)
                self.freezes.setdefault(pid, []).append((time.monotonic(), float("inf")))
        replica.frozen_since = at
        return at

    def thaw(self, replica: Replica) -> float:
        """SIGCONT everything under the supervisor, then the supervisor; the moment it began."""
        at = time.monotonic()
        for pid in self.children_of(replica):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        with contextlib.suppress(ProcessLookupError):
            os.kill(replica.pid, signal.SIGCONT)
        self._thawed(replica, at)
        return at

    def kill_container(self, replica: Replica) -> float:
        """SIGKILL of the supervisor and everything under it; when all of it was seen dead."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(replica.pid, signal.SIGSTOP)  # it can start nothing, release nothing
        children = self.children_of(replica)
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert wait_until(lambda: all(ended(pid) for pid in children), 5)
        dead_at = time.monotonic()
        for pid in children:
            self.killed[pid] = dead_at
        replica.proc.kill()
        replica.proc.wait(5)
        self._thawed(replica, dead_at)
        return dead_at

    def _thawed(self, replica: Replica, at: float) -> None:
        """Close the frozen spans of `replica`'s children at `at`."""
        for pid in replica.frozen_pids:
            spans = self.freezes[pid]
            if spans and spans[-1][1] == float("inf"):
                spans[-1] = (spans[-1][0], at)
        replica.frozen_pids.clear()
        replica.frozen_since = None

    def describe(self) -> str:
        parts = [self.record.read_text() if self.record.exists() else "(no child yet)"]
        parts.extend(f"  {run}" for run in self.runs())
        for replica in self.replicas:
            text = replica.log.read_text(errors="replace") if replica.log.exists() else ""
            parts.append(f"--- replica {replica.index} (pid {replica.pid})\n{text[-5000:]}")
        return "\n".join(parts)

    def close(self) -> None:
        """Kill everything left: supervisors frozen first, so that none starts a child meanwhile."""
        live = [r for r in self.replicas if r.proc.poll() is None]
        for replica in live:
            with contextlib.suppress(ProcessLookupError):
                os.kill(replica.pid, signal.SIGSTOP)
        for replica in live:
            for pid in self.children_of(replica):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            replica.proc.kill()
            replica.proc.wait(10)
        forget(self.backend, self.url, self.key)


def ended(pid: int) -> bool:
    """Whether `pid` has exited: gone, or a zombie (also while its parent is frozen)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[-1].split()[0] in ("Z", "X")
    except OSError:  # gone between the open and the read too (ESRCH)
        return True


def forget(backend: str, url: str, key: str) -> None:
    """Remove everything a test made under `key`: lease, token counter, handoff and replicas."""
    if backend == "redis":
        from entrypoint.probes.resp import RedisConnection

        host, port = require_server("redis")
        with RedisConnection(host, port, timeout=2) as conn:
            conn.command("DEL", key, f"{key}:token", f"{key}:replicas")
        return
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        for table in (
            "entrypoint_lease_tokens",
            "entrypoint_handoff",
            "entrypoint_handoff_replicas",
        ):
            with contextlib.suppress(psycopg.errors.UndefinedTable):
                conn.execute(f"DELETE FROM {table} WHERE key = %s", (key,))  # noqa: S608


def report(figure: str, seconds: float) -> None:
    """A measured figure, printed for `pytest -s` and the docs."""
    sys.stdout.write(f"\nFIGURE {figure}: {seconds:.3f} s\n")
