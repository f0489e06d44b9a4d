"""`entrypoint handoff --store` with real replicas: two `entrypoint run` workers
(ENTRYPOINT_HANDOFF=1) yield to a developer's command through Redis or PostgreSQL.

The replicas' children (tests/lease_child.py) and the developer's command
(DEV below) write down when they started and stopped, on CLOCK_MONOTONIC: CMD
must start only after every replica's child stopped, no child may run while
CMD runs, and the replicas must start again within the TTL once the handoff
ends, by CMD's end or by a SIGKILL of the handoff. The replicas find the store
as the handoff does, from QUEUE_URL (no ENTRYPOINT_LEASE_URL).
"""

from __future__ import annotations

import contextlib
import json
import shlex
import signal
import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import pytest

from tests.helpers import Running, base_env, run_entrypoint, wait_until
from tests.replicas import BACKENDS, LEASE_CHILD, Cluster, Replica, report, store_url
from tests.servers import require_server

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

TTL = 3.0
STOP_TIMEOUT = 2.0
REPLICAS = 2
# The developer's command: `<name>_start` when it runs, `<name>_end` when its stdin closes.
DEV = """\
import sys, time
path, name = sys.argv[1], sys.argv[2]
def note(word):
    with open(path, "a") as out:
        out.write(f"{name}_{word} {time.monotonic():.6f}\\n")
note("start")
sys.stdin.read()
note("end")
"""


@pytest.fixture(params=[pytest.param(name, marks=pytest.mark.server(name)) for name in BACKENDS])
def yielding(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    """Worker replicas that yield to a handoff: not started yet."""
    backend = str(request.param)
    require_server(backend)
    cluster = Cluster(tmp_path, backend, store_url(backend), env={})
    cluster.key = cluster.key.replace("test:one:", "test:handoff:")
    cluster.env.update(
        MODE="worker",
        WORKER_CMD=shlex.join([sys.executable, LEASE_CHILD, str(cluster.record)]),
        QUEUE_URL=cluster.url,
        ENTRYPOINT_HANDOFF="1",
        ENTRYPOINT_HANDOFF_KEY=cluster.key,
        ENTRYPOINT_LEASE_TTL=str(TTL),
        ENTRYPOINT_STOP_TIMEOUT=str(STOP_TIMEOUT),
    )
    try:
        yield cluster
    finally:
        cluster.close()


def handoff_env(cluster: Cluster) -> dict[str, str]:
    """What the developer's shell has: the same queue URL, key and TTL (no MODE)."""
    return base_env(
        QUEUE_URL=cluster.url,
        ENTRYPOINT_HANDOFF_KEY=cluster.key,
        ENTRYPOINT_LEASE_TTL=str(TTL),
    )


def dev(cluster: Cluster, name: str) -> list[str]:
    script = cluster.tmp / "dev.py"
    script.write_text(DEV)
    return [sys.executable, str(script), str(cluster.tmp / "dev.log"), name]


@contextlib.contextmanager
def handoff(cluster: Cluster, name: str, *options: str) -> Iterator[Running]:
    """`entrypoint handoff --store [options] -- DEV`, killed with what is left of it at the end."""
    argv = [sys.executable, "-m", "entrypoint", "handoff", "--store", *options, "--"]
    with Running([*argv, *dev(cluster, name)], handoff_env(cluster), stdin=subprocess.PIPE) as run:
        try:
            yield run
        finally:
            if run.proc.stdin is not None and not run.proc.stdin.closed:
                run.proc.stdin.close()


def dev_times(cluster: Cluster) -> dict[str, float]:
    path = cluster.tmp / "dev.log"
    text = path.read_text() if path.exists() else ""
    return {word: float(stamp) for word, stamp in (line.split() for line in text.splitlines())}


def finish(process: Running) -> None:
    """End the developer's command: its stdin closes."""
    assert process.proc.stdin is not None
    if not process.proc.stdin.closed:
        process.proc.stdin.close()


def all_running(cluster: Cluster) -> bool:
    """Every live replica runs its child."""
    live = [r for r in cluster.replicas if r.proc.poll() is None]
    running = {run.supervisor for run in cluster.running()}
    return len(live) == REPLICAS and all(r.pid in running for r in live)


def resumed_after(cluster: Cluster, moment: float) -> dict[int, float]:
    """replica pid -> when its first child after `moment` started."""
    found: dict[int, float] = {}
    for run in cluster.started_after(moment):
        found.setdefault(run.supervisor, run.start)
    return found


def entrypoint_for(
    cluster: Cluster, replica: Replica, *args: str
) -> subprocess.CompletedProcess[str]:
    env = base_env(**cluster.env, ENTRYPOINT_STATE_FILE=str(replica.state_file))
    return run_entrypoint(*args, env=env, timeout=10)


def assert_yielded(cluster: Cluster) -> None:
    """Each replica says so: the state file, `health` 0, `status` and `status --json`."""
    for replica in cluster.replicas:
        assert replica.state().get("state") == "yielded", replica.state()
        health = entrypoint_for(cluster, replica, "health")
        assert health.returncode == 0, health
        assert "yielded" in health.stdout + health.stderr, health
        status = entrypoint_for(cluster, replica, "status")
        assert status.returncode == 0, status
        assert "yielded" in status.stdout, status
        document = json.loads(entrypoint_for(cluster, replica, "status", "--json").stdout)
        assert document["state"] == "yielded", document
        assert replica.events("handoff_yielded"), cluster.describe()


def test_replicas_stop_before_cmd_starts_and_resume_after_it_ends(yielding: Cluster) -> None:
    cluster = yielding
    for _ in range(REPLICAS):
        cluster.start()
    assert wait_until(lambda: all_running(cluster), 20), cluster.describe()
    asked_at = time.monotonic()
    with handoff(cluster, "cmd") as first:
        assert wait_until(lambda: "cmd_start" in dev_times(cluster), 2 * TTL + STOP_TIMEOUT + 5), (
            f"{first.stderr}\n{cluster.describe()}"
        )
        cmd_start = dev_times(cluster)["cmd_start"]
        report(f"{cluster.backend} handoff: asked -> CMD started", cmd_start - asked_at)
        before = [run for run in cluster.runs() if run.start < cmd_start]
        assert len(before) == REPLICAS, cluster.describe()
        for run in before:
            assert run.end is not None, f"child {run.pid} runs with CMD\n{cluster.describe()}"
            assert run.end < cmd_start, cluster.describe()
        assert_yielded(cluster)

        # A second handoff while this one holds the lease: one line naming the holder, 75.
        second = run_entrypoint(
            "handoff", "--store", "--", *dev(cluster, "never"), env=handoff_env(cluster)
        )
        assert second.returncode == 75, second
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1, second.stderr
        assert f"host {socket.gethostname()}" in lines[0], lines[0]
        assert f"pid {first.pid}" in lines[0], lines[0]
        assert "--wait" in lines[0], lines[0]

        # One with --wait: it waits, and runs once the first is done.
        with handoff(cluster, "cmd2", "--wait") as waiting:
            waiting.wait_event("handoff_waiting", timeout=10)
            assert "cmd2_start" not in dev_times(cluster)
            finish(first)
            assert first.wait(10) == 0, first.stderr
            cmd_end = dev_times(cluster)["cmd_end"]
            assert wait_until(lambda: "cmd2_start" in dev_times(cluster), 4 * TTL + 10), (
                f"{waiting.stderr}\n{cluster.describe()}"
            )
            cmd2_start = dev_times(cluster)["cmd2_start"]
            assert cmd2_start > cmd_end
            report(
                f"{cluster.backend} handoff --wait: first CMD ended -> CMD started",
                cmd2_start - cmd_end,
            )
            for run in cluster.runs():
                if run.start < cmd2_start:
                    assert run.end is not None, cluster.describe()
                    assert run.end < cmd2_start, cluster.describe()
            finish(waiting)
            assert waiting.wait(10) == 0, waiting.stderr
            cmd2_end = dev_times(cluster)["cmd2_end"]

    # Released: both replicas start their child again within the TTL.
    assert wait_until(lambda: len(resumed_after(cluster, cmd2_end)) == REPLICAS, TTL + 2), (
        cluster.describe()
    )
    resumed = resumed_after(cluster, cmd2_end)
    slowest = max(resumed.values()) - cmd2_end
    report(f"{cluster.backend} handoff: CMD ended -> last replica's child started", slowest)
    assert slowest <= TTL, cluster.describe()
    for replica in cluster.replicas:
        assert replica.events("handoff_resumed"), cluster.describe()
    # No child ran while a CMD did.
    for run in cluster.runs():
        for begin, end in ((cmd_start, cmd_end), (cmd2_start, cmd2_end)):
            assert run.end is not None or run.start > end
            assert run.start > end or (run.end is not None and run.end < begin), cluster.describe()


def test_a_handoff_killed_with_sigkill_lets_the_replicas_resume_within_the_ttl(
    yielding: Cluster,
) -> None:
    cluster = yielding
    for _ in range(REPLICAS):
        cluster.start()
    assert wait_until(lambda: all_running(cluster), 20), cluster.describe()
    with handoff(cluster, "cmd") as held:
        assert wait_until(lambda: "cmd_start" in dev_times(cluster), 2 * TTL + STOP_TIMEOUT + 5), (
            f"{held.stderr}\n{cluster.describe()}"
        )
        held.proc.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        held.proc.wait(5)
        assert wait_until(lambda: len(resumed_after(cluster, killed_at)) == REPLICAS, TTL + 2), (
            cluster.describe()
        )
        slowest = max(resumed_after(cluster, killed_at).values()) - killed_at
        report(
            f"{cluster.backend} handoff: SIGKILL of the handoff -> last replica resumed", slowest
        )
        assert slowest <= TTL, cluster.describe()
        for replica in cluster.replicas:
            assert replica.events("handoff_resumed"), cluster.describe()
            assert replica.state().get("state") == "running", replica.state()
        finish(held)  # the orphaned CMD: the developer stops it


def test_a_replica_started_during_a_handoff_yields_before_its_first_child(
    yielding: Cluster,
) -> None:
    cluster = yielding
    cluster.start()
    assert wait_until(lambda: len(cluster.running()) == 1, 20), cluster.describe()
    with handoff(cluster, "cmd") as held:
        assert wait_until(lambda: "cmd_start" in dev_times(cluster), 2 * TTL + STOP_TIMEOUT + 5), (
            f"{held.stderr}\n{cluster.describe()}"
        )
        late = cluster.start()
        assert wait_until(lambda: late.state().get("state") == "yielded", 20), cluster.describe()
        assert late.events("handoff_yielded"), cluster.describe()
        assert not [run for run in cluster.runs() if run.supervisor == late.pid]
        assert not late.events("child_started"), cluster.describe()
        finish(held)
        assert held.wait(10) == 0, held.stderr
        ended = dev_times(cluster)["cmd_end"]
    assert wait_until(lambda: len(resumed_after(cluster, ended)) == REPLICAS, TTL + 2), (
        cluster.describe()
    )
    assert late.events("handoff_resumed"), cluster.describe()
