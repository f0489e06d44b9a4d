"""Restarts that wait for the broker, with a private redis-server stopped and started again.

The worker (tests/child.py --hold-redis) keeps a connection to Redis and
exits 1 when it closes, as real workers do when their broker goes away. While
Redis is down the entrypoint starts nothing, says `dependency_waiting` now
and then, and `health` stays 0 (restarting the container cannot fix the
broker); the worker is back within about 2 s of Redis answering. The outage
here is OUTAGE_S; `benchmarks/liveness.py --outage 60` measures a minute.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import sleep_until
from tests.liveness_helpers import PrivateRedis, Worker, at, child_pid, one_line

OUTAGE_S = 8.0


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    try:
        yield server
    finally:
        server.close()


def test_a_broker_outage_starts_no_child_until_it_returns(
    tmp_path: Path, redis: PrivateRedis
) -> None:
    redis.start()
    worker = Worker(tmp_path, QUEUE_URL=redis.url(), ENTRYPOINT_WAIT_TIMEOUT="120")
    with worker.run("--hold-redis") as run:
        first = child_pid(run)
        run.wait_stdout(r"^redis connected")
        down = redis.stop()
        exited = run.wait_event("child_exited")[0]
        assert (exited["pid"], exited["exit_code"], exited["reason"]) == (first, 1, "exit")
        run.wait_event("dependency_waiting")
        sleep_until(lambda: worker.state().get("state") == "waiting", 5)
        answers = []
        while time.time() < down + OUTAGE_S:  # the outage IS these seconds
            answers.append((worker.health().returncode, worker.health("--ready").returncode))
        during = [e for e in run.events("child_started") if at(e) > down]
        waiting = run.events("dependency_waiting")
        up = redis.start()
        back = run.wait_event("child_started", timeout=15, count=2)[1]
        child_pid(run, count=2)
        run.wait_stdout(r"^redis connected", count=2)
        assert worker.health().returncode == 0
        run.signal(signal.SIGTERM)
        assert run.wait() == 0
    print(
        f"\nRedis down {up - down:.1f} s: {len(during)} respawns, {len(waiting)} "
        f"dependency_waiting lines, worker back {at(back) - up:.2f} s after Redis answered"
    )
    assert during == []
    assert set(answers) == {(0, 1)}, answers  # alive, not ready, all along
    # At the first failure, then at most once per 5 s.
    assert 1 <= len(waiting) <= OUTAGE_S / 5 + 2
    assert at(back) - up < 2.0 + 1.5  # "within about 2 s", plus a loaded machine's slack
    assert run.events("dependency_ready")
    assert [e["attempt"] for e in run.events("restart_scheduled")] == [1]


def test_health_stays_0_while_a_hung_broker_is_probed(tmp_path: Path, redis: PrivateRedis) -> None:
    redis.start()
    worker = Worker(
        tmp_path,
        QUEUE_URL=redis.url(),
        ENTRYPOINT_PROBE_TIMEOUT="3",
        ENTRYPOINT_WAIT_TIMEOUT="120",
    )
    with worker.run() as run:
        pid = child_pid(run)
        assert redis.proc is not None
        redis.proc.send_signal(signal.SIGSTOP)  # accepts (the kernel does), never answers
        os.kill(pid, signal.SIGKILL)  # a death the entrypoint did not cause: a failure
        run.wait_event("restart_scheduled")
        probing = time.monotonic()
        answers = []
        while time.monotonic() < probing + 3.5:  # the probe's timeout, and a little more
            answers.append(worker.health().returncode)
        run.wait_event("dependency_waiting", timeout=10)
        redis.proc.send_signal(signal.SIGCONT)
        child_pid(run, count=2)
        run.signal(signal.SIGTERM)
        assert run.wait() == 0
    assert answers
    assert set(answers) == {0}, answers


def test_a_rotated_password_during_the_wait_exits_69_at_once(
    tmp_path: Path, redis: PrivateRedis
) -> None:
    redis.start(password="old-secret")
    worker = Worker(tmp_path, QUEUE_URL=redis.url("old-secret"), ENTRYPOINT_WAIT_TIMEOUT="120")
    with worker.run("--hold-redis") as run:
        child_pid(run)
        run.wait_stdout(r"^redis connected")
        redis.stop()
        run.wait_event("dependency_waiting")
        up = redis.start(password="new-secret")  # the configured one is now wrong
        assert run.wait(15) == 69
        ended = time.time()
    failed = run.events("dependency_failed")[0]
    assert failed["permanent"] is True
    line = one_line("\n".join(x for x in run.stderr if not x.startswith("{")))
    assert "refused (permanent, not retried)" in line
    assert "AUTH" in line or "WRONGPASS" in line or "password" in line.lower()
    assert "old-secret" not in "\n".join(run.stderr + run.stdout)
    assert len(run.events("child_started")) == 1
    print(f"\nexit 69 {ended - up:.2f} s after Redis came back with another password")
    assert ended - up < 2.0 + 3.0  # at the first probe that gets an answer, not at the deadline


def test_the_wait_timeout_runs_out_during_an_outage(tmp_path: Path, redis: PrivateRedis) -> None:
    redis.start()
    worker = Worker(tmp_path, QUEUE_URL=redis.url(), ENTRYPOINT_WAIT_TIMEOUT="3")
    with worker.run("--hold-redis") as run:
        child_pid(run)
        run.wait_stdout(r"^redis connected")
        redis.stop()
        assert run.wait(20) == 69
        ended = time.time()
    crashed = at(run.events("child_exited")[0])
    line = one_line("\n".join(x for x in run.stderr if not x.startswith("{")))
    assert f"127.0.0.1:{redis.port}" in line
    assert "still unavailable after 3 s" in line
    assert len(run.events("child_started")) == 1
    # The wait's own deadline, as at start (its last attempt may begin a little before).
    assert 3.0 - 0.5 <= ended - crashed < 3.0 + 6.0
