"""One at a time, end to end: the leader's flag, fencing tokens and frozen leaders.

Real replicas (`python -m entrypoint run`), real Redis and PostgreSQL, real
SIGSTOP/SIGCONT and a TCP proxy for partitions. The children
(tests/lease_child.py) write down when they started and stopped, with the
flag and the token they were given; every figure and every overlap comes from
those lines (CLOCK_MONOTONIC, one clock for every process of the host).
"""

from __future__ import annotations

import itertools
import shlex
import sys
import time
from typing import TYPE_CHECKING

import pytest

from tests.helpers import base_env, run_entrypoint, wait_until
from tests.replicas import (
    BACKENDS,
    FLAG,
    LEASE_CHILD,
    Cluster,
    Run,
    ended,
    report,
    store_url,
)
from tests.servers import require_server
from tests.tcp_proxy import TcpProxy

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

TTL = 3.0
STOP_TIMEOUT = 2.0
# A standby tries the lease at most this often (the supervisor's STANDBY_RETRY_MAX).
RETRY = 1.0


@pytest.fixture(params=[pytest.param(name, marks=pytest.mark.server(name)) for name in BACKENDS])
def backend(request: pytest.FixtureRequest) -> str:
    name = str(request.param)
    require_server(name)
    return name


def make_cluster(tmp: Path, backend: str, *, mode: str) -> Cluster:
    cluster = Cluster(tmp, backend, store_url(backend), env={})
    command = shlex.join([sys.executable, LEASE_CHILD, str(cluster.record), FLAG])
    cluster.env.update(
        MODE=mode,
        ENTRYPOINT_LEASE_KEY=cluster.key,
        ENTRYPOINT_LEASE_TTL=str(TTL),
        ENTRYPOINT_STOP_TIMEOUT=str(STOP_TIMEOUT),
    )
    if mode == "scheduler":
        cluster.env["SCHEDULER_CMD"] = command
    else:
        cluster.env.update(WORKER_CMD=command, ENTRYPOINT_LEADER_ENV=FLAG)
    return cluster


@pytest.fixture
def flagged(backend: str, tmp_path: Path) -> Iterator[Cluster]:
    """Worker replicas with ENTRYPOINT_LEADER_ENV=ENABLE_SCHEDULER."""
    cluster = make_cluster(tmp_path, backend, mode="worker")
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def scheduler(backend: str, tmp_path: Path) -> Iterator[Cluster]:
    """MODE=scheduler replicas: only the leader runs a child."""
    cluster = make_cluster(tmp_path, backend, mode="scheduler")
    try:
        yield cluster
    finally:
        cluster.close()


def one_true(cluster: Cluster, replicas: int = 3, timeout: float = 20) -> Run:
    """Wait until every replica runs its child and exactly one of them sees true."""

    def settled() -> bool:
        running = cluster.running()
        return len(running) == replicas and [r.flag for r in running].count("true") == 1

    assert wait_until(settled, timeout), cluster.describe()
    return cluster.leaders()[0]


def assert_tokens_increase(cluster: Cluster, flag: str | None = "true") -> None:
    """Children with the lease carry a token, strictly growing in start order; others none."""
    runs = cluster.runs()
    holders = [r for r in runs if flag is None or r.flag == flag]
    for run in holders:
        assert run.token is not None, f"child {run.pid} has no token\n{cluster.describe()}"
    for before, after in itertools.pairwise(holders):
        assert before.token is not None
        assert after.token is not None
        assert after.token > before.token, (
            f"child {after.pid} got token {after.token} after child {before.pid}'s "
            f"{before.token}\n{cluster.describe()}"
        )
    for run in runs:
        if flag is not None and run.flag != flag:
            assert run.token is None, f"child {run.pid} ({run.flag}) has a token"


def true_overlap(cluster: Cluster) -> float:
    """The longest time two children with true could act at once."""
    return cluster.max_overlap(flag="true")[0]


# -- the leader's flag ---------------------------------------------------------------


def test_three_replicas_one_true_and_term_of_the_leader_hands_over_without_overlap(
    flagged: Cluster, backend: str
) -> None:
    for _ in range(3):
        flagged.start()
    leader = one_true(flagged)
    # The others keep trying the lease; nothing changes while the leader renews.
    assert not wait_until(lambda: len(flagged.runs()) > 3, TTL), flagged.describe()
    assert_tokens_increase(flagged)
    replica = flagged.replica_of(leader)
    termed_at = time.monotonic()
    replica.proc.terminate()
    assert wait_until(lambda: bool(flagged.started_after(termed_at, "true")), 2 * RETRY + 2), (
        flagged.describe()
    )
    assert replica.proc.wait(STOP_TIMEOUT + 5) == 0, "the leader's child stopped cleanly"
    new = flagged.started_after(termed_at, "true")[0]
    old = next(r for r in flagged.runs() if r.pid == leader.pid)
    assert old.end is not None
    report(f"{backend} leader flag: TERM of the leader -> new true child", new.start - termed_at)
    report(f"{backend} leader flag: overlap of true children on TERM", max(0, old.end - new.start))
    assert new.start >= old.end, flagged.describe()  # 0 s overlap: the old leader's child first
    # The new leader restarted its own child: false stopped, then true started.
    new_replica = flagged.replica_of(new)
    before = [r for r in flagged.runs() if r.supervisor == new.supervisor and r.pid != new.pid]
    assert before
    assert before[-1].flag == "false"
    assert before[-1].end is not None
    assert before[-1].end <= new.start
    changed = [e for e in new_replica.events("leader_env_changed") if e["value"] == "true"]
    assert changed
    assert changed[-1]["name"] == FLAG
    one_true(flagged, replicas=2)
    assert_tokens_increase(flagged)
    assert true_overlap(flagged) == 0, flagged.describe()


def test_sigkill_of_the_leader_container_another_takes_over_within_ttl_plus_one(
    flagged: Cluster, backend: str
) -> None:
    """SIGKILL of the leader's supervisor, as a container engine delivers it: to all of it.

    The supervisor is PID 1 of its container, whose end takes the child with
    it; a supervisor killed alone on a host would leave its child running
    with true, and nothing could stop that child.
    """
    for _ in range(3):
        flagged.start()
    leader = one_true(flagged)
    killed_at = flagged.kill_container(flagged.replica_of(leader))
    assert wait_until(lambda: bool(flagged.started_after(killed_at, "true")), TTL + RETRY + 3), (
        flagged.describe()
    )
    new = flagged.started_after(killed_at, "true")[0]
    acquired = [
        flagged.monotonic(e)
        for e in flagged.replica_of(new).events("leader_acquired")
        if flagged.monotonic(e) > killed_at
    ]
    report(
        f"{backend} leader flag: SIGKILL of the leader -> leader_acquired", acquired[0] - killed_at
    )
    report(f"{backend} leader flag: SIGKILL of the leader -> new true child", new.start - killed_at)
    assert acquired[0] - killed_at <= TTL + RETRY, flagged.describe()
    one_true(flagged, replicas=2)
    assert true_overlap(flagged) == 0, flagged.describe()
    assert_tokens_increase(flagged)


def test_partitioned_leader_restarts_its_child_with_false_before_the_ttl(
    flagged: Cluster, backend: str
) -> None:
    host, port = require_server(backend)
    _, path, user = BACKENDS[backend]
    with TcpProxy((host, port)) as proxy:
        cut_off = flagged.start(url=proxy.url(backend, path, user))
        assert wait_until(lambda: len(flagged.leaders()) == 1, 20), flagged.describe()
        flagged.start()
        flagged.start()
        leader = one_true(flagged)
        assert flagged.replica_of(leader) is cut_off
        assert not wait_until(lambda: len(flagged.runs()) > 3, TTL / 2)  # renewed at least once
        cut_at = time.monotonic()
        proxy.cut()

        def restarted_false() -> bool:
            return any(r.supervisor == cut_off.pid for r in flagged.started_after(cut_at, "false"))

        assert wait_until(restarted_false, TTL + 2), flagged.describe()
        old = next(r for r in flagged.runs() if r.pid == leader.pid)
        false_child = next(
            r for r in flagged.started_after(cut_at, "false") if r.supervisor == cut_off.pid
        )
        assert old.end is not None
        report(f"{backend} leader flag: partition -> leader's true child stopped", old.end - cut_at)
        report(
            f"{backend} leader flag: partition -> restarted with false", false_child.start - cut_at
        )
        # The lease was last renewed before the cut: it can expire by cut + TTL at the earliest.
        assert false_child.start - cut_at < TTL, flagged.describe()
        lost = cut_off.events("leader_lost")
        assert lost, flagged.describe()
        assert wait_until(lambda: bool(flagged.started_after(cut_at, "true")), TTL + RETRY + 3), (
            flagged.describe()
        )
        new = flagged.started_after(cut_at, "true")[0]
        assert flagged.replica_of(new) is not cut_off
        report(f"{backend} leader flag: partition -> new true child", new.start - cut_at)
        overlap = true_overlap(flagged)
        report(f"{backend} leader flag: overlap of true children after a partition", overlap)
        assert overlap <= TTL, flagged.describe()
        # Healed, the old leader stays a follower: still one true, in three running children.
        proxy.restore()
        assert not wait_until(lambda: len(flagged.leaders()) != 1, TTL), flagged.describe()
        one_true(flagged)
        assert cut_off.proc.poll() is None
        assert_tokens_increase(flagged)


# -- frozen leaders ---------------------------------------------------------------------


def lease_children(cluster: Cluster, mode: str) -> list[Run]:
    runs = cluster.runs()
    return runs if mode == "scheduler" else [r for r in runs if r.flag == "true"]


def gone_after(pid: int, since: float, timeout: float) -> float | None:
    """Seconds from `since` until `pid` has exited (watched every ms); None if it did not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ended(pid):
            return time.monotonic() - since
        time.sleep(0.001)
    return None


@pytest.mark.parametrize("mode", ["scheduler", "worker"])
def test_a_frozen_leader_is_replaced_and_stops_its_child_on_thawing(
    backend: str, mode: str, tmp_path: Path
) -> None:
    cluster = make_cluster(tmp_path, backend, mode=mode)
    try:
        first = cluster.start()
        assert wait_until(lambda: bool(lease_children(cluster, mode)), 20), cluster.describe()
        cluster.start()
        if mode == "worker":
            one_true(cluster, replicas=2)
        leader = lease_children(cluster, mode)[-1]
        assert cluster.replica_of(leader) is first
        frozen_at = cluster.freeze(first)

        def replaced() -> bool:
            return any(r.supervisor != first.pid for r in lease_children(cluster, mode))

        assert wait_until(replaced, TTL + RETRY + 3), cluster.describe()
        new = next(r for r in lease_children(cluster, mode) if r.supervisor != first.pid)
        report(f"{backend} {mode}: frozen leader -> standby's child", new.start - frozen_at)
        # The freeze itself lasts longer than the TTL (the takeover came sooner: the
        # lease was last renewed before the freeze).
        time.sleep(max(0.0, frozen_at + TTL + 0.2 - time.monotonic()))
        thawed_at = cluster.thaw(first)
        took = gone_after(leader.pid, thawed_at, 3)
        assert took is not None, cluster.describe()
        report(f"{backend} {mode}: thaw -> frozen leader's child gone", took)
        assert took < 1.0, cluster.describe()  # the contract; the target is 0.5 s
        assert wait_until(lambda: bool(first.events("leader_lost")), 2), cluster.describe()
        reaped = lambda: any(e["pid"] == leader.pid for e in first.events("child_exited"))  # noqa: E731
        assert wait_until(reaped, 2), cluster.describe()
        if mode == "worker":
            assert wait_until(
                lambda: any(
                    r.supervisor == first.pid for r in cluster.started_after(thawed_at, "false")
                ),
                STOP_TIMEOUT + 3,
            ), cluster.describe()
            one_true(cluster, replicas=2)
        else:
            assert not wait_until(lambda: len(cluster.running()) != 1, TTL), cluster.describe()
        overlap = cluster.max_overlap(flag=None if mode == "scheduler" else "true")[0]
        report(f"{backend} {mode}: overlap around a freeze (frozen time not counted)", overlap)
        assert overlap < 1.0, cluster.describe()
        assert_tokens_increase(cluster, None if mode == "scheduler" else "true")
    finally:
        cluster.close()


def test_a_leader_that_lost_its_lease_gets_a_new_token_when_it_takes_it_again(
    scheduler: Cluster,
) -> None:
    """Frozen past 2/3 of the TTL but not the TTL: its lease is still its own in the store.

    On thawing the supervisor says `leader_lost` and stops its child; it then
    takes the lease again (nobody else wants it). The next child is a new
    tenure: its token must be greater, or a write of the old child still in
    flight would pass a fence that the new child has already raised.
    """
    only = scheduler.start()
    assert wait_until(lambda: len(scheduler.running()) == 1, 20), scheduler.describe()
    first = scheduler.running()[0]
    scheduler.freeze(only)
    time.sleep(TTL * 0.85)  # the freeze itself: past the guard (2/3 TTL), short of the TTL
    scheduler.thaw(only)
    assert wait_until(lambda: len(scheduler.runs()) == 2, TTL + 3), scheduler.describe()
    second = scheduler.runs()[1]
    assert only.events("leader_lost"), scheduler.describe()
    assert first.token is not None
    assert second.token is not None
    assert second.token > first.token, scheduler.describe()


# -- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "names"),
    [
        (
            {"MODE": "worker", "ENTRYPOINT_LEADER_ENV": ""},
            ("ENTRYPOINT_LEADER_ENV", "variable name"),
        ),
        (
            {"MODE": "worker", "ENTRYPOINT_LEADER_ENV": "1BAD"},
            ("ENTRYPOINT_LEADER_ENV=1BAD", "name"),
        ),
        (
            {"MODE": "worker", "ENTRYPOINT_LEADER_ENV": "PATH"},
            ("ENTRYPOINT_LEADER_ENV=PATH", "needs"),
        ),
        (
            {"MODE": "scheduler", "ENTRYPOINT_LEADER_ENV": FLAG},
            ("ENTRYPOINT_LEADER_ENV", "already runs one replica at a time"),
        ),
        (
            {"MODE": "worker", "ENTRYPOINT_HANDOFF": "1", "QUEUE_URL": "nats://127.0.0.1:4222"},
            ("ENTRYPOINT_HANDOFF=1", "nats", "cannot hold"),
        ),
        (
            {"MODE": "worker", "ENTRYPOINT_HANDOFF": "1", "QUEUE_CONNECTION": "sqs"},
            ("ENTRYPOINT_HANDOFF=1", "QUEUE_CONNECTION", "cannot hold"),
        ),
    ],
    ids=["empty", "1BAD", "PATH", "scheduler", "handoff-nats", "handoff-sqs"],
)
def test_bad_input_is_one_line_and_78(env: dict[str, str], names: tuple[str, ...]) -> None:
    if "ENTRYPOINT_LEADER_ENV" in env:
        env = {"ENTRYPOINT_LEASE_URL": "redis://127.0.0.1:6379/0", **env}
    done = run_entrypoint(
        "run", "--", sys.executable, "-c", "print('started')", env=base_env(**env)
    )
    assert done.returncode == 78, done
    assert "started" not in done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    for name in names:
        assert name in lines[0], lines[0]


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"QUEUE_URL": "nats://127.0.0.1:4222"}, ("QUEUE_URL", "cannot hold the handoff lease")),
        ({"QUEUE_CONNECTION": "sqs"}, ("QUEUE_CONNECTION", "cannot hold the handoff lease")),
        ({}, ("handoff --store needs", "QUEUE_URL")),
    ],
    ids=["nats", "sqs", "none"],
)
def test_handoff_store_without_a_store_that_holds_a_lease_is_78(
    env: dict[str, str], names: tuple[str, ...]
) -> None:
    done = run_entrypoint("handoff", "--store", "--", "true", env=base_env(**env))
    assert done.returncode == 78, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    for name in names:
        assert name in lines[0], lines[0]
