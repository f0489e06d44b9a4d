"""Chaos: 200 random kills, stops, freezes and partitions of three scheduler replicas.

Three `MODE=scheduler` replicas on one Redis lease (TTL 2 s), each reaching
Redis through a TCP proxy of its own so that any one can be cut off. Each
step draws one action and a replica (the leader half of the time, unless it
is frozen or cut off already): SIGKILL of
the whole container (supervisor and child), TERM, SIGSTOP of the whole
container, or a partition; a freeze ends with SIGCONT, a partition heals,
after a time drawn short (under 2/3 of the TTL: the leader may keep its
lease), between the guard and the TTL, or long (past the TTL and the
takeover: a leader that did not give up in time would overlap its successor
by more than the TTL). At most two replicas are frozen, and two cut off, at
a time; a freeze or partition drawn beyond that is not done (nor counted). A replica that ended is
started again.

From the children's own `start`/`stop` lines (and the moments the test saw
killed ones dead, froze and thawed them), no two children may have been able
to act at the same time for longer than the lease allows (the TTL), and the
tokens they were given must grow strictly in the order they started.

The seed is printed; `CHAOS_SEED=N` replays a run (as far as timing allows).
"""

from __future__ import annotations

import collections
import itertools
import os
import random
import shlex
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest

from tests.helpers import wait_until
from tests.replicas import LEASE_CHILD, Cluster, Replica, report, store_url
from tests.servers import require_server
from tests.tcp_proxy import TcpProxy

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

TTL = 2.0
ACTIONS = 200
STOP_TIMEOUT = 1.0
SLOTS = 3
WEIGHTS = {"kill9": 1, "term": 1, "freeze": 4, "partition": 4}
MAX_HELD = 2  # frozen (or cut off) at once: one replica is always free to lead
PACE = (0.05, 0.35)  # seconds between two actions


def hold_time(rng: random.Random) -> float:
    """How long a freeze or a partition lasts.

    Short of the guard (2/3 of the TTL: the leader keeps its lease), between
    the guard and the TTL (it gives up a lease still its own), or past the
    takeover (TTL + a standby's retry: another leads meanwhile).
    """
    kind = rng.randrange(3)
    if kind == 0:
        return rng.uniform(0.2, TTL * 0.6)
    if kind == 1:
        return rng.uniform(TTL * 0.7, TTL * 0.95)
    return rng.uniform(TTL + 0.5, 3 * TTL)


@dataclass
class Chaos:
    cluster: Cluster
    proxies: list[TcpProxy]
    rng: random.Random
    slots: list[Replica] = field(default_factory=list)
    thaw_at: dict[int, float] = field(default_factory=dict)  # slot -> when to SIGCONT it
    heal_at: dict[int, float] = field(default_factory=dict)  # slot -> when to heal it
    done: collections.Counter[str] = field(default_factory=collections.Counter)

    def start(self, slot: int) -> Replica:
        replica = self.cluster.start(url=self.proxies[slot].url("redis", "/0"))
        if slot < len(self.slots):
            self.slots[slot] = replica
        else:
            self.slots.append(replica)
        return replica

    def catch_up(self) -> None:
        """Thaw and heal what is due; start again the replicas that ended."""
        now = time.monotonic()
        for slot, when in list(self.thaw_at.items()):
            if when <= now:
                self.thaw(slot)
        for slot, when in list(self.heal_at.items()):
            if when <= now:
                self.heal(slot)
        for slot, replica in enumerate(self.slots):
            if replica.proc.poll() is not None:
                self.thaw_at.pop(slot, None)
                self.start(slot)
                self.done["restart"] += 1

    def thaw(self, slot: int) -> None:
        self.cluster.thaw(self.slots[slot])
        del self.thaw_at[slot]
        self.done["sigcont"] += 1

    def heal(self, slot: int) -> None:
        self.proxies[slot].restore()
        del self.heal_at[slot]
        self.done["heal"] += 1

    def leader(self) -> int | None:
        running = {run.supervisor for run in self.cluster.runs(logs=False) if run.end is None}
        return next((i for i, r in enumerate(self.slots) if r.pid in running), None)

    def act(self) -> None:
        """One action, counted in `done`; none when the one drawn cannot be done now."""
        rng = self.rng
        action = rng.choices(list(WEIGHTS), list(WEIGHTS.values()))[0]
        held = {"freeze": self.thaw_at, "partition": self.heal_at}.get(action, {})
        free = [i for i in range(SLOTS) if i not in held]
        if len(held) >= MAX_HELD:
            free = []
        if not free:
            return  # as many frozen (cut off) as may be: they run their course
        leader = self.leader()
        if leader in self.thaw_at or leader in self.heal_at:
            leader = None  # already hit: left to run its course, as far as chance allows
        slot = leader if leader in free and rng.random() < 0.5 else rng.choice(free)
        assert slot is not None
        replica = self.slots[slot]
        if action == "kill9":
            self.cluster.kill_container(replica)
            self.thaw_at.pop(slot, None)
        elif action == "term":
            replica.proc.terminate()
        elif action == "freeze":
            self.cluster.freeze(replica)
            self.thaw_at[slot] = time.monotonic() + hold_time(rng)
        else:
            self.proxies[slot].cut()
            self.heal_at[slot] = time.monotonic() + hold_time(rng)
        self.done[action] += 1

    def calm(self) -> None:
        for slot in list(self.thaw_at):
            self.thaw(slot)
        for slot in list(self.heal_at):
            self.heal(slot)
        self.catch_up()


@pytest.fixture
def chaos(tmp_path: Path) -> Iterator[Chaos]:
    seed = int(os.environ.get("CHAOS_SEED", str(random.SystemRandom().randrange(2**32))))
    sys.stdout.write(f"\nCHAOS_SEED={seed}\n")
    host, port = require_server("redis")
    cluster = Cluster(tmp_path, "redis", store_url("redis"), env={})
    cluster.env.update(
        MODE="scheduler",
        SCHEDULER_CMD=shlex.join([sys.executable, LEASE_CHILD, str(cluster.record)]),
        ENTRYPOINT_LEASE_KEY=cluster.key,
        ENTRYPOINT_LEASE_TTL=str(TTL),
        ENTRYPOINT_STOP_TIMEOUT=str(STOP_TIMEOUT),
        ENTRYPOINT_LOG_LEVEL="info",
    )
    proxies = [TcpProxy((host, port)) for _ in range(SLOTS)]
    try:
        for proxy in proxies:
            proxy.__enter__()
        yield Chaos(cluster, proxies, random.Random(seed))
    finally:
        cluster.close()
        for proxy in proxies:
            proxy.close()


@pytest.mark.server("redis")
@pytest.mark.timeout(300)
def test_chaos_never_two_leaders_longer_than_the_lease(chaos: Chaos) -> None:
    cluster = chaos.cluster
    began = time.monotonic()
    for slot in range(SLOTS):
        chaos.start(slot)
    while sum(chaos.done[a] for a in WEIGHTS) < ACTIONS:
        chaos.catch_up()
        chaos.act()
        time.sleep(chaos.rng.uniform(*PACE))  # the pace of the chaos, not a synchronisation
    chaos.calm()
    # Calm again: one leader, its child running, the others standing by.
    assert wait_until(lambda: len(cluster.running()) == 1, TTL + 10), cluster.describe()
    took = time.monotonic() - began
    for replica in chaos.slots:
        replica.proc.terminate()
    for replica in chaos.slots:
        replica.proc.wait(STOP_TIMEOUT + 10)
    runs = cluster.runs()
    worst, first, second = cluster.max_overlap()
    sys.stdout.write(
        f"chaos: {dict(chaos.done)}, {len(runs)} children, {len(cluster.replicas)} replicas,"
        f" {took:.1f} s\n"
    )
    report("chaos: longest overlap of two children holding the lease", worst)
    assert worst <= TTL, f"{first} and {second} overlap {worst:.3f} s\n{cluster.describe()}"
    assert len(runs) > 10, f"the lease hardly moved\n{cluster.describe()}"
    for run in runs:
        assert run.token is not None, f"child {run.pid} has no token"
        assert run.end is not None, f"child {run.pid} still running\n{cluster.describe()}"
    for before, after in itertools.pairwise(runs):
        assert before.token is not None
        assert after.token is not None
        assert after.token > before.token, (
            f"child {after.pid} started with token {after.token} after child {before.pid}"
            f" with {before.token}\n{cluster.describe()}"
        )
