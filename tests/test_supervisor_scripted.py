"""The Supervisor driven by a scripted world: no process, no wall clock, no slack.

The clock only moves when the supervisor waits; children are scripted (when they
exit, with which status, how they answer a signal); the lease answers as told.
Restart, backoff, stop, escalation and lease decisions are asserted at their
exact times.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from entrypoint.lease import LeaseUnavailable
from entrypoint.plan.modes import LeaseSpec, SupervisePlan
from entrypoint.plan.policy import Cause, Restart
from entrypoint.plan.settings import default_plan
from entrypoint.plan.urls import parse_url
from entrypoint.records import replace
from entrypoint.runtime.supervisor import Supervisor
from entrypoint.runtime.watch import StopRequest

TERM, KILL = signal.SIGTERM, signal.SIGKILL


@dataclass
class Child:
    """How one scripted child behaves: exit after `runs` seconds, or when signalled."""

    runs: float | None = None  # None: runs until a signal ends it
    code: int = 0
    on_term: float | None = 0.0  # seconds it takes to exit after TERM; None: ignores TERM
    term_code: int = 143


@dataclass
class World:
    children: list[Child]
    now: float = 0.0
    signals_at: dict[float, list[int]] = field(default_factory=dict)
    spawned: list[tuple[float, int]] = field(default_factory=list)
    sent: list[tuple[float, int, int]] = field(default_factory=list)
    states: list[str] = field(default_factory=list)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    _exits: dict[int, tuple[float, int]] = field(default_factory=dict)
    _behaviour: dict[int, Child] = field(default_factory=dict)
    _pending: list[int] = field(default_factory=list)
    _stop: int | None = None

    # -- the supervisor's world ------------------------------------------------------

    def clock(self) -> float:
        return self.now

    def spawn(self, argv: Any, env: Mapping[str, str] | None = None, **_: Any) -> int:
        pid = 1000 + len(self.spawned)
        self.spawned.append((self.now, pid))
        child = self.children[min(len(self.spawned) - 1, len(self.children) - 1)]
        self._behaviour[pid] = child
        if child.runs is not None:
            self._exits[pid] = (self.now + child.runs, child.code)
        return pid

    def reap(self) -> Iterator[tuple[int, int]]:
        for pid, (when, code) in sorted(self._exits.items()):
            if when <= self.now:
                del self._exits[pid]
                yield pid, code

    def send(self, pid: int, signum: int, *, group: bool) -> bool:
        self.sent.append((self.now, pid, signum))
        child = self._behaviour.get(pid)
        if child is None or (pid not in self._exits and signum != KILL and child.on_term is None):
            return True
        if signum == KILL:
            self._exits[pid] = (self.now, 128 + KILL)
        elif signum == TERM and child.on_term is not None:
            when = self.now + child.on_term
            if pid not in self._exits or self._exits[pid][0] > when:
                self._exits[pid] = (when, child.term_code)
        return True

    # -- the inbox -----------------------------------------------------------------------

    def wait(self, timeout: float | None) -> None:
        """Time passes until the next scripted thing: a signal, a child's exit, the timeout."""
        if self._pending or any(when <= self.now for when, _code in self._exits.values()):
            return  # a signal, or a SIGCHLD, is already there
        candidates = [t for t in self.signals_at if t > self.now]
        candidates += [when for when, _code in self._exits.values() if when > self.now]
        if timeout is not None:
            candidates.append(self.now + timeout)
        assert candidates, "the supervisor would wait forever"
        self.now = min(candidates)
        self._pending += self.signals_at.pop(self.now, [])

    def take(self) -> list[int]:
        taken, self._pending = self._pending, []
        if self._stop is None:
            self._stop = next((s for s in taken if s in (TERM, signal.SIGINT)), None)
        return taken

    @property
    def stop_requested(self) -> bool:
        return self._stop is not None

    @property
    def stop_signal(self) -> int | None:
        return self._stop

    def notify(self) -> None:
        pass

    # -- what it says --------------------------------------------------------------------

    def info(self, event: str, **fields: Any) -> None:
        self.events.append((event, fields))

    warning = error = info

    def named(self, event: str) -> list[dict[str, Any]]:
        return [fields for name, fields in self.events if name == event]


class Store:
    def __init__(self, world: World) -> None:
        self.world = world

    def write(self, state: Any) -> bool:
        if not self.world.states or self.world.states[-1] != state.state:
            self.world.states.append(state.state)
        return True


def plan(**changes: Any) -> SupervisePlan:
    base = default_plan()
    assert isinstance(base, SupervisePlan)
    restart = changes.pop("restart", {})
    return replace(base, restart=replace(base.restart, **restart), **changes)


def supervise(world: World, the_plan: SupervisePlan | None = None, **kwargs: Any) -> int:
    supervisor = Supervisor(
        the_plan or plan(),
        inbox=world,  # type: ignore[arg-type]
        clock=world.clock,
        wall=world.clock,
        spawn=world.spawn,
        reap=world.reap,
        send=world.send,
        rand=lambda: 0.0,
        descendants=lambda _pid, _known: [],
        group_alive=lambda _pgid: False,
        store=Store(world),  # type: ignore[arg-type]
        logger=world,
        **kwargs,
    )
    return supervisor.run()


def starts(world: World) -> list[float]:
    return [round(when, 6) for when, _pid in world.spawned]


def test_a_crash_loop_backs_off_exactly_and_a_stop_in_backoff_ends_it() -> None:
    world = World([Child(runs=0.5, code=1)], signals_at={40.0: [TERM]})
    assert supervise(world) == 1
    # Each run lasts 0.5 s; the delays are 1, 2, 4, 8, 16 s (jitter 0).
    assert starts(world) == [0.0, 1.5, 4.0, 8.5, 17.0, 33.5]
    assert [e["delay_s"] for e in world.named("restart_scheduled")] == [1, 2, 4, 8, 16, 32]
    assert world.now == 40.0  # the stop ended the 32 s sleep at once
    assert world.named("stop_finished")[0]["child_running"] is False


def test_a_clean_exit_after_the_minimum_uptime_restarts_at_once() -> None:
    world = World([Child(runs=12, code=0), Child(runs=None)], signals_at={20.0: [TERM]})
    assert supervise(world) == 143
    assert starts(world) == [0.0, 12.0]
    assert world.named("restart_scheduled")[0]["reason"] == "clean exit"


def test_a_child_that_ignores_term_is_killed_at_the_deadline_and_a_second_term_moves_nothing() -> (
    None
):
    world = World([Child(on_term=None)], signals_at={5.0: [TERM], 10.0: [TERM]})
    assert supervise(world, plan(stop=replace(plan().stop, timeout=25.0))) == 128 + KILL
    terms = [when for when, _pid, signum in world.sent if signum == TERM]
    kills = [when for when, _pid, signum in world.sent if signum == KILL]
    assert terms == [5.0, 10.0]
    assert kills == [30.0]  # 25 s after the FIRST term
    assert len(world.named("stop_started")) == 1
    assert world.states[-2:] == ["stopping", "stopped"]


@pytest.mark.parametrize(("restart", "code", "expected", "spawns"), [
    (Restart.ON_FAILURE, 0, 0, 1),
    (Restart.NEVER, 3, 3, 1),
    (Restart.ON_FAILURE, 3, None, 2),
])  # fmt: skip
def test_restart_policies(restart: Restart, code: int, expected: int | None, spawns: int) -> None:
    children = [Child(runs=2, code=code), Child(runs=None)]
    world = World(children, signals_at={30.0: [TERM]})
    result = supervise(world, plan(restart={"restart": restart}))
    assert result == (143 if expected is None else expected)
    assert len(world.spawned) == spawns
    if expected is not None:
        assert world.now == 2.0  # ended with the child, at once


def test_give_up_with_the_last_childs_status() -> None:
    world = World([Child(runs=0.1, code=5)])
    result = supervise(world, plan(restart={"max_restarts": 3, "backoff_initial": 0.5}))
    assert result == 5
    assert len(world.spawned) == 4
    assert world.named("gave_up")[0]["exit_code"] == 5


class Lease:
    """A lease that answers as scripted: acquire() by call, renew() by time."""

    ttl = 9.0
    token: int | None = 7
    where = "redis://lease:6379/0"

    def __init__(self, world: World, acquired: list[bool], renew_fails_after: float) -> None:
        self.world = world
        self.acquired = acquired
        self.renew_fails_after = renew_fails_after
        self.calls: list[tuple[float, str]] = []

    def acquire(self) -> bool:
        self.calls.append((self.world.now, "acquire"))
        return self.acquired.pop(0) if self.acquired else True

    def renew(self) -> bool:
        self.calls.append((self.world.now, "renew"))
        if self.world.now >= self.renew_fails_after:
            raise LeaseUnavailable("redis://lease:6379/0: connection refused")
        return True

    def release(self) -> None:
        self.calls.append((self.world.now, "release"))

    def close(self) -> None:
        pass


def test_a_standby_takes_the_lease_and_a_leader_that_cannot_renew_stops_its_child_in_time() -> None:
    world = World([Child(runs=None), Child(runs=None)], signals_at={40.0: [TERM]})
    lease = Lease(world, acquired=[False, False, True], renew_fails_after=10.0)
    spec = LeaseSpec(parse_url("redis://lease:6379/0", "QUEUE_URL"), "k", 9.0, "the queue URL")
    result = supervise(world, plan(lease=spec), lease=lease)
    assert result == 143
    first_start = world.spawned[0][0]
    assert [call for _t, call in lease.calls[:3]] == ["acquire", "acquire", "acquire"]
    assert first_start == lease.calls[2][0]  # started as soon as the lease was taken
    lost = world.named("leader_lost")[0]
    assert "not renewed in time" in lost["reason"] or "refused" in lost["reason"]
    # The child is stopped before the lease could expire (TTL 9 s after the last renewal).
    renewals = [t for t, call in lease.calls if call == "renew" and t < 10.0]
    stop = next(when for when, pid, signum in world.sent if signum == TERM)
    assert stop < renewals[-1] + 9.0
    assert world.named("leader_released")


def test_the_leaders_child_gets_its_fencing_token() -> None:
    seen: list[Mapping[str, str] | None] = []
    world = World([Child(runs=None)], signals_at={3.0: [TERM]})
    original = world.spawn

    def spawn(argv: Any, env: Mapping[str, str] | None = None, **kwargs: Any) -> int:
        seen.append(env)
        return original(argv, env, **kwargs)

    world.spawn = spawn  # type: ignore[method-assign]
    lease = Lease(world, acquired=[True], renew_fails_after=1e9)
    spec = LeaseSpec(parse_url("redis://lease:6379/0", "QUEUE_URL"), "k", 9.0, "the queue URL")
    supervise(world, plan(lease=spec), lease=lease)
    assert seen[0] is not None
    assert seen[0]["ENTRYPOINT_LEASE_TOKEN"] == "7"


class Recycler:
    """A watch that asks for one memory recycle at a given time."""

    def __init__(self, at: float) -> None:
        self.at: float | None = at

    def child_env(self, env: Mapping[str, str]) -> Mapping[str, str]:
        return env

    def child_started(self, pid: int, now: float) -> None:
        pass

    def child_exited(self) -> None:
        pass

    def due(self) -> float | None:
        return self.at

    def check(self, now: float) -> StopRequest | None:
        if self.at is not None and now >= self.at:
            self.at = None
            return StopRequest(Cause.MEMORY, "memory_recycle", rss_bytes=2, limit_bytes=1)
        return None

    def stop_extension(self, since: float) -> float | None:
        del since
        return None

    def publish(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        pass


def test_a_memory_recycle_restarts_at_once_and_is_no_failure() -> None:
    world = World([Child(runs=None, on_term=0.5)], signals_at={20.0: [TERM]})
    assert supervise(world, watches=[Recycler(at=5.0)]) == 143
    assert starts(world) == [0.0, 5.5]  # stopped at 5, exited at 5.5, started at once
    (exited, _last) = world.named("child_exited")
    assert exited["reason"] == "memory"
    assert world.named("restart_scheduled")[0]["attempt"] == 0
