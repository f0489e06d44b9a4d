"""The leader's flag with a real BullMQ worker: its job scheduler runs on one replica at a time.

Three `MODE=worker` replicas with `ENTRYPOINT_LEADER_ENV=ENABLE_SCHEDULER`
run tests/node/bullmq_scheduler_worker.mjs, a BullMQ Worker that declares a
job scheduler (`queue.upsertJobScheduler`, a tick every 200 ms) only when
`ENABLE_SCHEDULER === 'true'`, and removes it on TERM. Every replica's Worker
processes the ticks and writes down who produced each, for when. The ticks,
in the order of their scheduled times, must come from one producer at a
time: one stream, then the next after a TERM of the leader, never two
interleaved.
"""

from __future__ import annotations

import collections
import itertools
import shlex
import shutil
import sys
import time
import uuid
from typing import TYPE_CHECKING

import pytest

from entrypoint.probes.resp import RedisConnection
from tests.helpers import ROOT, wait_until
from tests.replicas import FLAG, Cluster, report, store_url
from tests.servers import missing, require_server

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

NODE_DIR = ROOT / "tests" / "node"
APP = NODE_DIR / "bullmq_scheduler_worker.mjs"
TTL = 3.0
EVERY_MS = 200
STOP_TIMEOUT = 10.0


def node() -> str:
    found = shutil.which("node")
    if found is None:
        missing("node is not installed (apt-get install nodejs)")
    if not (NODE_DIR / "node_modules" / "bullmq").is_dir():
        missing("bullmq is not installed: npm ci --prefix tests/node --nodedir=/usr")
    return str(found)


def ticks(path: Path) -> list[tuple[int, str, str]]:
    """(scheduled ms, producer, token) of every tick processed, by scheduled time."""
    text = path.read_text() if path.exists() else ""
    found = set()
    for line in text.split("\n")[:-1]:
        _, producer, token, scheduled, _by = line.split()
        found.add((int(scheduled), producer, token))
    return sorted(found)


def analyse(produced: list[tuple[int, str, str]]) -> tuple[list[tuple[str, list[int]]], list[int]]:
    """The streams of ticks (producer, scheduled times), and the seconds with two producers."""
    streams = [
        (producer, [t for t, _, _ in group])
        for producer, group in itertools.groupby(produced, key=lambda tick: tick[1])
    ]
    per_second: dict[int, set[str]] = collections.defaultdict(set)
    for scheduled, producer, _ in produced:
        per_second[scheduled // 1000].add(producer)
    shared = sorted(second for second, producers in per_second.items() if len(producers) > 1)
    sys.stdout.write(
        f"\nbullmq: {len(produced)} ticks, streams {[(p, len(ts)) for p, ts in streams]},"
        f" seconds with two producers: {len(shared)} of {len(per_second)}\n"
    )
    return streams, shared


@pytest.fixture
def bullmq(tmp_path: Path) -> Iterator[Cluster]:
    executable = node()
    host, port = require_server("redis")
    prefix = f"test-bull-{uuid.uuid4().hex[:12]}"
    cluster = Cluster(tmp_path, "redis", store_url("redis"), env={})
    command = [
        executable, str(APP), str(port), "0", prefix, "ticks",
        str(cluster.record), str(tmp_path / "ticks.log"), str(EVERY_MS),
    ]  # fmt: skip
    cluster.env.update(
        MODE="worker",
        WORKER_CMD=shlex.join(command),
        ENTRYPOINT_LEADER_ENV=FLAG,
        ENTRYPOINT_LEASE_KEY=cluster.key,
        ENTRYPOINT_LEASE_TTL=str(TTL),
        ENTRYPOINT_STOP_TIMEOUT=str(STOP_TIMEOUT),
    )
    try:
        yield cluster
    finally:
        cluster.close()
        with RedisConnection(host, port, timeout=2) as conn:
            cursor = "0"
            while True:
                reply = conn.command("SCAN", cursor, "MATCH", f"{prefix}:*", "COUNT", 1000)
                assert isinstance(reply, list)
                raw_cursor, keys = reply
                assert isinstance(raw_cursor, bytes)
                assert isinstance(keys, list)
                if keys:
                    conn.command("DEL", *[k.decode() for k in keys if isinstance(k, bytes)])
                cursor = raw_cursor.decode()
                if cursor == "0":
                    break


@pytest.mark.server("redis")
@pytest.mark.timeout(180)
def test_bullmq_job_scheduler_runs_on_one_replica_at_a_time_across_a_term(
    bullmq: Cluster, tmp_path: Path
) -> None:
    log = tmp_path / "ticks.log"
    for index in range(3):
        bullmq.start(REPLICA=f"r{index}")

    def settled() -> bool:
        running = bullmq.running()
        return len(running) == 3 and [r.flag for r in running].count("true") == 1

    assert wait_until(settled, 30), bullmq.describe()
    leader = bullmq.leaders()[0]
    first = bullmq.replica_of(leader)
    # Ticks flow from the leader only.
    assert wait_until(lambda: len(ticks(log)) >= 10, 15), bullmq.describe()
    assert {producer for _, producer, _ in ticks(log)} == {f"r{first.index}"}
    termed_at = time.monotonic()
    first.proc.terminate()
    assert first.proc.wait(STOP_TIMEOUT + 5) == 0, bullmq.describe()

    def handed_over() -> bool:
        return len({p for _, p, _ in ticks(log)}) == 2 and len(ticks(log)) >= 20

    assert wait_until(handed_over, TTL + 15), bullmq.describe()
    new = bullmq.started_after(termed_at, "true")[0]
    report("bullmq: TERM of the leader -> new leader's worker started", new.start - termed_at)
    # Let the new producer run a while, then stop everything: its scheduler is removed too.
    count = len(ticks(log))
    assert wait_until(lambda: len(ticks(log)) >= count + 10, 10), bullmq.describe()
    for replica in bullmq.replicas:
        if replica.proc.poll() is None:
            replica.proc.terminate()
    for replica in bullmq.replicas:
        replica.proc.wait(STOP_TIMEOUT + 5)

    produced = ticks(log)
    streams, shared = analyse(produced)
    # One producer at a time: each producer's ticks form one stream, the streams do not interleave.
    assert [p for p, _ in streams] == [f"r{first.index}", f"r{bullmq.replica_of(new).index}"], (
        f"{streams}\n{bullmq.describe()}"
    )
    assert len(shared) <= 1, produced  # at most the second of the handover
    gap = (streams[1][1][0] - streams[0][1][-1]) / 1000
    report("bullmq: last tick of the old producer -> first tick of the new one", gap)
    assert gap > 0
    # The producers' tokens: the first leader's, then a greater one.
    tokens = [int(token) for _, _, token in produced]
    assert tokens == sorted(tokens), produced
    assert tokens[0] < tokens[-1]
    # The children with the flag true never overlapped (0 s on TERM).
    assert bullmq.max_overlap(flag="true")[0] == 0, bullmq.describe()


@pytest.mark.server("redis")
@pytest.mark.timeout(120)
def test_without_the_flag_two_schedulers_interleave(bullmq: Cluster, tmp_path: Path) -> None:
    """The control: ENABLE_SCHEDULER=true set on two instances by hand, no lease.

    What the application's own warning is about, and the proof that the
    analysis above sees two producers when there are two.
    """
    log = tmp_path / "ticks.log"
    del bullmq.env["ENTRYPOINT_LEADER_ENV"]
    for index in range(2):
        bullmq.start(REPLICA=f"r{index}", **{FLAG: "true"})
    assert wait_until(lambda: len({p for _, p, _ in ticks(log)}) == 2, 20), bullmq.describe()
    count = len(ticks(log))
    assert wait_until(lambda: len(ticks(log)) >= count + 20, 15), bullmq.describe()
    for replica in bullmq.replicas:
        replica.proc.terminate()
    for replica in bullmq.replicas:
        replica.proc.wait(STOP_TIMEOUT + 5)
    streams, shared = analyse(ticks(log))
    assert len(streams) > 2
    assert len(shared) > 1
