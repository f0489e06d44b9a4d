"""Pure lease decisions (the store check, the frozen-leader guard) and a real SIGSTOP."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from entrypoint.lease import lease_clock
from entrypoint.plan import leasing
from entrypoint.plan.leasing import (
    default_handoff_key,
    leader_acts_until,
    leader_may_act,
    lease_backend_problem,
)
from entrypoint.plan.urls import parse_url
from tests.helpers import ROOT, wait_until


@pytest.mark.parametrize(
    "url",
    [
        "redis://h:6379/0",
        "rediss://:pw@h/2",
        "postgresql://u:pw@h/db",
        "postgres://h/db?sslmode=require",
        "pgsql://h/db",
    ],
)
def test_stores_that_can_hold_a_lease(url: str) -> None:
    assert lease_backend_problem(parse_url(url, "QUEUE_URL")) is None


@pytest.mark.parametrize(
    "url",
    [
        "amqp://guest:Zx9?Secret@rabbit:5672/",
        "nats://Zx9?Secret@nats:4222",
        "mysql://u:Zx9?Secret@db/app",
        "sqlite:///var/app.db",
        "tcp://h:1",
    ],
)
def test_other_stores_are_named_without_their_secret(url: str) -> None:
    problem = lease_backend_problem(parse_url(url, "QUEUE_URL"))
    assert problem is not None
    assert problem.startswith("QUEUE_URL: ")
    assert "ENTRYPOINT_LEASE_URL" in problem
    assert "Zx9" not in problem
    assert "\n" not in problem


def test_a_bad_sslmode_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    dep = parse_url("postgresql://u:Zx9Secret@h/db?sslmode=sometimes", "ENTRYPOINT_LEASE_URL")
    problem = lease_backend_problem(dep)
    assert problem is not None
    assert "sslmode='sometimes'" in problem
    assert "Zx9Secret" not in problem


def test_postgresql_without_psycopg_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(leasing, "driver_available", lambda module: module != "psycopg")
    dep = parse_url("postgresql://u:Zx9Secret@h/db", "ENTRYPOINT_LEASE_URL")
    problem = lease_backend_problem(dep, "the handoff lease")
    assert problem is not None
    assert "entrypoint[postgres]" in problem
    assert "the handoff lease" in problem
    assert "Zx9Secret" not in problem


def test_default_handoff_key() -> None:
    assert default_handoff_key(None) == "entrypoint:handoff:worker"
    assert default_handoff_key("") == "entrypoint:handoff:worker"
    assert default_handoff_key("mailer") == "entrypoint:handoff:mailer"


# -- the frozen-leader guard -----------------------------------------------------


def test_the_guard_as_values() -> None:
    assert leader_may_act(last_renewed=100.0, ttl=15, now=100.0)
    assert leader_may_act(last_renewed=100.0, ttl=15, now=109.99)
    assert not leader_may_act(last_renewed=100.0, ttl=15, now=110.0)
    assert not leader_may_act(last_renewed=100.0, ttl=15, now=100.0 + 3600)
    assert leader_acts_until(100.0, 3) == pytest.approx(102.0)


@given(
    renewed=st.floats(0, 1e6),
    ttl=st.floats(0.1, 3600),
    elapsed=st.floats(0, 1e4),
)
def test_the_guard_never_lets_a_leader_act_past_the_ttl(
    renewed: float, ttl: float, elapsed: float
) -> None:
    may = leader_may_act(last_renewed=renewed, ttl=ttl, now=renewed + elapsed)
    if elapsed >= ttl:
        assert not may
    if elapsed < ttl / 2:
        assert may


FROZEN_LEADER = """
import json, sys, time
from entrypoint.lease import lease_clock
from entrypoint.plan.leasing import leader_may_act
from entrypoint.runtime.loop import Loop

ttl = float(sys.argv[1])
loop = Loop(clock=lease_clock)
renewed, mono, boot = lease_clock(), time.monotonic(), time.clock_gettime(time.CLOCK_BOOTTIME)
verdicts = []

def wakeup():
    now = lease_clock()
    verdicts.append({
        "may_act": leader_may_act(last_renewed=renewed, ttl=ttl, now=now),
        "at_monotonic": time.monotonic(),
        "monotonic_s": time.monotonic() - mono,
        "boottime_s": time.clock_gettime(time.CLOCK_BOOTTIME) - boot,
    })

loop.call_at(renewed + ttl / 3, wakeup)  # the renewal a leader sets up
print("ready", flush=True)
while not verdicts:
    loop.run_once(None)
print(json.dumps(verdicts[0]), flush=True)
"""


def _frozen_leader(ttl: float, frozen_for: float | None) -> dict[str, Any]:
    """Run the leader loop; SIGSTOP it for `frozen_for` s (None: leave it running)."""
    process = subprocess.Popen(
        [sys.executable, "-c", FROZEN_LEADER, str(ttl)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        if frozen_for is not None:
            process.send_signal(signal.SIGSTOP)
            stopped = time.monotonic()
            # The freeze itself is the scenario: it has to last this long.
            assert not wait_until(lambda: False, timeout=frozen_for)
            assert time.monotonic() - stopped >= frozen_for
            continued = time.monotonic()
            process.send_signal(signal.SIGCONT)
        verdict: dict[str, Any] = json.loads(process.stdout.readline())
        assert process.wait(5) == 0
        if frozen_for is not None:
            verdict["thaw_to_verdict_s"] = verdict["at_monotonic"] - continued
        return verdict
    finally:
        process.kill()
        process.wait(5)
        if process.stdout is not None:
            process.stdout.close()


def test_a_leader_frozen_past_its_ttl_is_told_to_stop_on_thawing() -> None:
    ttl = 0.9
    verdict = _frozen_leader(ttl, frozen_for=ttl + 0.3)
    assert verdict["may_act"] is False
    # The renewal timer came due during the freeze: the wakeup is at once.
    assert verdict["thaw_to_verdict_s"] < 1.0, verdict
    # CLOCK_MONOTONIC (and CLOCK_BOOTTIME) counted the stopped time.
    assert verdict["monotonic_s"] >= ttl + 0.3
    assert verdict["boottime_s"] >= ttl + 0.3


def test_control_a_leader_that_was_not_frozen_may_act() -> None:
    verdict = _frozen_leader(0.9, frozen_for=None)
    assert verdict["may_act"] is True
    assert verdict["monotonic_s"] < 0.9 * 2 / 3


def test_lease_clock_counts_like_monotonic_when_nothing_is_suspended() -> None:
    # Each lease reading is bracketed by two monotonic ones, so a preemption
    # between the reads widens the bracket instead of failing the test.
    before_start, start_lease, after_start = time.monotonic(), lease_clock(), time.monotonic()
    assert wait_until(lambda: time.monotonic() - after_start > 0.05, timeout=1)
    before_end, end_lease, after_end = time.monotonic(), lease_clock(), time.monotonic()
    epsilon = 0.001  # two clocks, each read at its own resolution
    assert before_end - after_start - epsilon <= end_lease - start_lease
    assert end_lease - start_lease <= after_end - before_start + epsilon
