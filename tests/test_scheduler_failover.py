"""MODE=scheduler across three replicas, end to end: real supervisors, real Redis and PostgreSQL.

Each replica is `python -m entrypoint run` with the same lease key; the child
appends `start <pid> <monotonic>` and, on TERM, `stop <pid> <monotonic>` to one
shared file (CLOCK_MONOTONIC is the same clock in every process on the host).
From that file the tests rebuild when each child ran, and check that no two
ever ran at once, across a leader killed with SIGKILL, stopped with TERM, and
cut off from the lease backend by a partition.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

import pytest

from tests.helpers import wait_until
from tests.servers import require_server
from tests.tcp_proxy import TcpProxy

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

TTL = 3.0
STOP_TIMEOUT = 2.0

CHILD = """\
import os, signal, sys, time
path = sys.argv[1]
def note(word):
    with open(path, "a") as out:
        out.write(f"{word} {os.getpid()} {time.monotonic():.6f}\\n")
def on_term(_signum, _frame):
    note("stop")
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
note("start")
try:
    os.remove(path + ".crash")  # the test asked for one crash: this child is it
except FileNotFoundError:
    pass
else:
    note("stop")
    sys.exit(1)
while True:
    signal.pause()
"""


@dataclass
class Run:
    pid: int
    start: float
    end: float | None = None  # None: still running (as far as the file and the test know)


@dataclass
class Cluster:
    """Scheduler replicas sharing one lease key, and the file their children write to."""

    tmp: Path
    entrypoint_argv: list[str]
    lease_url: str
    key: str = field(default_factory=lambda: f"test:failover:{uuid.uuid4().hex}")
    replicas: list[subprocess.Popen[bytes]] = field(default_factory=list)
    killed: dict[int, float] = field(default_factory=dict)  # child pid -> seen dead at
    killed_wall: dict[int, float] = field(default_factory=dict)  # the same, on the wall clock

    @property
    def record(self) -> Path:
        return self.tmp / "children.log"

    def start(
        self, lease_url: str | None = None, extra: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        index = len(self.replicas)
        child = self.tmp / "child.py"
        child.write_text(CHILD)
        env = {
            **os.environ,
            "MODE": "scheduler",
            "SCHEDULER_CMD": f"{sys.executable} {child} {self.record}",
            "ENTRYPOINT_LEASE_URL": lease_url or self.lease_url,
            "ENTRYPOINT_LEASE_KEY": self.key,
            "ENTRYPOINT_LEASE_TTL": str(TTL),
            "ENTRYPOINT_STOP_TIMEOUT": str(STOP_TIMEOUT),
            "ENTRYPOINT_STATE_FILE": str(self.tmp / f"state-{index}.json"),
            "ENTRYPOINT_LOG_FORMAT": "json",
            "ENTRYPOINT_LOG_LEVEL": "debug",
            **(extra or {}),
        }
        with (self.tmp / f"replica-{index}.log").open("wb") as log:
            replica = subprocess.Popen(
                [*self.entrypoint_argv, "run"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.replicas.append(replica)
        return replica

    def runs(self) -> list[Run]:
        runs: dict[int, Run] = {}
        text = self.record.read_text() if self.record.exists() else ""
        for line in text.split("\n")[:-1]:  # the last one may be still being written
            word, child, stamp = line.split()
            if word == "start":
                runs[int(child)] = Run(int(child), float(stamp))
            else:
                runs[int(child)].end = float(stamp)
        for pid, dead_at in self.killed.items():
            if pid in runs and runs[pid].end is None:
                runs[pid].end = dead_at
        return sorted(runs.values(), key=lambda run: run.start)

    def running(self) -> list[Run]:
        return [run for run in self.runs() if run.end is None]

    def leader_child(self, timeout: float = 20) -> Run:
        assert wait_until(lambda: len(self.running()) == 1, timeout), self.describe()
        return self.running()[0]

    def replica_of(self, child_pid: int) -> subprocess.Popen[bytes]:
        ppid = parent_of(child_pid)
        return next(r for r in self.replicas if r.pid == ppid)

    def started_after(self, moment: float) -> list[Run]:
        return [run for run in self.runs() if run.start > moment]

    def kill_container(self, replica: subprocess.Popen[bytes], child_pid: int) -> float:
        """What a container engine does: SIGKILL to every process, the child included.

        The supervisor is frozen first, so that it can neither restart its child
        nor let go of the lease before the child is dead.
        """
        replica.send_signal(signal.SIGSTOP)
        os.killpg(child_pid, signal.SIGKILL)
        assert wait_until(lambda: not alive(child_pid), 5)
        self.killed[child_pid] = time.monotonic()
        self.killed_wall[child_pid] = time.time()
        replica.kill()
        killed_at = time.monotonic()
        replica.wait(5)
        return killed_at

    def spawned(self) -> list[Run]:
        """Children as the supervisors saw them: `child_started` to `child_exited`.

        This also catches a child that was started and killed before it could
        write its first line. Timestamps are the logs' wall clock.
        """
        runs: dict[int, Run] = {}
        for index in range(len(self.replicas)):
            for line in (self.tmp / f"replica-{index}.log").read_text().splitlines():
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if event.get("event") not in ("child_started", "child_exited"):
                    continue
                stamp = datetime.fromisoformat(event["timestamp"]).timestamp()
                if event["event"] == "child_started":
                    runs[event["pid"]] = Run(event["pid"], stamp)
                elif event["pid"] in runs:
                    runs[event["pid"]].end = stamp
        for pid, dead_at in self.killed_wall.items():
            if pid in runs and runs[pid].end is None:
                runs[pid].end = dead_at
        return sorted(runs.values(), key=lambda run: run.start)

    def assert_one_at_a_time(self) -> None:
        """No two children at once: as they wrote it, and as their supervisors logged it."""
        for source, runs in (("children", self.runs()), ("supervisors", self.spawned())):
            for before, after in itertools.pairwise(runs):
                assert before.end is not None, (
                    f"two children running at once ({source}):\n{self.describe()}"
                )
                assert before.end <= after.start, (
                    f"child {after.pid} started {before.end - after.start:.3f} s before "
                    f"child {before.pid} stopped ({source}):\n{self.describe()}"
                )

    def describe(self) -> str:
        lines = [self.record.read_text() if self.record.exists() else "(no child yet)"]
        for index in range(len(self.replicas)):
            path = self.tmp / f"replica-{index}.log"
            lines.append(f"--- replica {index}\n{path.read_text()[-6000:]}")
        return "\n".join(lines)

    def close(self) -> None:
        """Kill everything: replicas frozen first, so that none starts a child meanwhile."""
        live = [r for r in self.replicas if r.poll() is None]
        for replica in live:
            replica.send_signal(signal.SIGSTOP)
        orphans = {run.pid for run in self.running()} | children_of({r.pid for r in live})
        for pid in orphans:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        for replica in live:
            replica.kill()
            replica.wait(10)


def alive(pid: int) -> bool:
    """False once `pid` has exited (a zombie whose parent is frozen counts as exited)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def children_of(parents: set[int]) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                if parent_of(int(entry)) in parents:
                    found.add(int(entry))
    return found


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])


def report(figure: str, seconds: float) -> None:
    sys.stdout.write(f"\nFIGURE {figure}: {seconds:.3f} s\n")


BACKENDS = {
    "redis": ("redis", "redis://{host}:{port}/0", "/0", ""),
    "postgresql": ("postgresql", "postgresql://postgres@{host}:{port}/test", "/test", "postgres"),
}


@pytest.fixture(
    params=[pytest.param(name, marks=pytest.mark.server(BACKENDS[name][0])) for name in BACKENDS]
)
def backend(request: pytest.FixtureRequest) -> tuple[str, tuple[str, int]]:
    name = str(request.param)
    return name, require_server(BACKENDS[name][0])


@pytest.fixture
def cluster(
    backend: tuple[str, tuple[str, int]], tmp_path: Path, entrypoint_argv: list[str]
) -> Iterator[Cluster]:
    name, (host, port) = backend
    made = Cluster(tmp_path, entrypoint_argv, BACKENDS[name][1].format(host=host, port=port))
    try:
        yield made
    finally:
        made.close()


def test_three_replicas_one_child_and_failover_after_sigkill(
    cluster: Cluster, backend: tuple[str, tuple[str, int]]
) -> None:
    for _ in range(3):
        cluster.start()
    leader = cluster.leader_child()
    # The standbys keep trying and must not start a second child meanwhile.
    assert not wait_until(lambda: len(cluster.runs()) > 1, TTL)
    replica = cluster.replica_of(leader.pid)
    killed_at = cluster.kill_container(replica, leader.pid)
    assert wait_until(lambda: bool(cluster.started_after(killed_at)), TTL + 1 + 2), (
        cluster.describe()
    )
    takeover = cluster.started_after(killed_at)[0].start - killed_at
    report(f"{backend[0]} takeover after SIGKILL of the leader", takeover)
    assert takeover <= TTL + 1, cluster.describe()
    cluster.assert_one_at_a_time()
    assert len(cluster.running()) == 1


def test_failover_after_term_of_the_leader(
    cluster: Cluster, backend: tuple[str, tuple[str, int]]
) -> None:
    for _ in range(3):
        cluster.start()
    leader = cluster.leader_child()
    replica = cluster.replica_of(leader.pid)
    termed_at = time.monotonic()
    replica.terminate()
    assert wait_until(lambda: bool(cluster.started_after(termed_at)), 2 + 2), cluster.describe()
    takeover = cluster.started_after(termed_at)[0].start - termed_at
    report(f"{backend[0]} takeover after TERM of the leader", takeover)
    assert takeover <= 2, cluster.describe()
    assert replica.wait(STOP_TIMEOUT + 5) == 0, "the child stopped cleanly on TERM"
    cluster.assert_one_at_a_time()
    assert len(cluster.running()) == 1


def test_partitioned_leader_stops_its_child_before_the_ttl_and_another_takes_over(
    cluster: Cluster, backend: tuple[str, tuple[str, int]]
) -> None:
    name, address = backend
    _, _, path, user = BACKENDS[name]
    with TcpProxy(address) as proxy:
        partitioned = cluster.start(lease_url=proxy.url(name, path, user))
        leader = cluster.leader_child()
        assert cluster.replica_of(leader.pid) is partitioned
        cluster.start()
        cluster.start()
        # Let the leader renew at least once with the standbys waiting.
        assert not wait_until(lambda: len(cluster.runs()) > 1, TTL / 2)
        cut_at = time.monotonic()
        proxy.cut()
        assert wait_until(lambda: cluster.runs()[0].end is not None, TTL + 2), cluster.describe()
        stopped_after = (cluster.runs()[0].end or 0) - cut_at
        report(f"{name} partitioned leader's child stopped after the cut", stopped_after)
        # The lease was last renewed before the cut: it expires by cut + TTL at the latest.
        assert stopped_after < TTL, cluster.describe()
        assert wait_until(lambda: bool(cluster.started_after(cut_at)), TTL + 3), cluster.describe()
        takeover = cluster.started_after(cut_at)[0].start - cut_at
        report(f"{name} takeover after the leader's partition", takeover)
        cluster.assert_one_at_a_time()
        new_leader = cluster.running()[0]
        assert cluster.replica_of(new_leader.pid) is not partitioned
        # Healed, the old leader stays a standby: still one child.
        proxy.restore()
        assert not wait_until(lambda: len(cluster.runs()) > 2, TTL)
        assert partitioned.poll() is None, "the partitioned replica keeps running, as a standby"
        cluster.assert_one_at_a_time()


def test_a_leader_in_restart_backoff_keeps_its_lease_or_lets_go(
    cluster: Cluster, backend: tuple[str, tuple[str, int]]
) -> None:
    """The leader's child crashes and the restart backoff is longer than the TTL.

    Whether the leader keeps renewing while it waits, or gives the lease up,
    it must not start a child again once another replica has taken over.
    """
    backoff = {"ENTRYPOINT_BACKOFF_INITIAL": str(TTL + 2), "ENTRYPOINT_BACKOFF_MAX": str(TTL + 2)}
    cluster.record.with_suffix(".log.crash").write_text("")
    cluster.start(extra=backoff)  # alone: the leader, whose first child crashes
    assert wait_until(lambda: len(cluster.runs()) == 1 and cluster.runs()[0].end is not None, 20)
    cluster.start(extra=backoff)
    cluster.start(extra=backoff)
    assert wait_until(lambda: len(cluster.running()) == 1, TTL + 2 + 5), cluster.describe()
    # Long enough for the leader's backoff to end, and for any overlap to show.
    wait_until(lambda: len(cluster.runs()) > 2, TTL + 2)
    cluster.assert_one_at_a_time()
    assert len(cluster.running()) == 1, cluster.describe()
