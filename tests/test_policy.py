"""Restart decisions as values, driven by a fake clock and fixed randomness."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from entrypoint.plan.modes import SupervisePlan
from entrypoint.plan.policy import (
    JITTER,
    Action,
    Cause,
    Decision,
    History,
    Reason,
    Restart,
    RestartPolicy,
    backoff_delay,
    decide,
    exit_reason,
    overdue,
)
from entrypoint.plan.settings import default_plan
from entrypoint.records import replace


def default_policy(**changes: Any) -> RestartPolicy:
    """The defaults, from the one place they live (settings.OPTIONS), with `changes`."""
    plan = default_plan()
    assert isinstance(plan, SupervisePlan)
    return replace(plan.restart, **changes)


POLICY = default_policy()


def crash_loop(
    policy: RestartPolicy, count: int, *, uptime: float = 0.5, rand: float = 0.0
) -> list[Decision]:
    history, now, decisions = History(), 0.0, list[Decision]()
    for _ in range(count):
        now += uptime
        decision = decide(policy, history, exit_code=1, uptime=uptime, now=now, rand=rand)
        decisions.append(decision)
        history = decision.history
        now += decision.delay
    return decisions


def test_delays_double_from_initial_and_cap_at_max() -> None:
    delays = [d.delay for d in crash_loop(POLICY, 9)]
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60, 60]


def test_attempts_count_the_backoff_sequence() -> None:
    assert [d.attempt for d in crash_loop(POLICY, 4)] == [1, 2, 3, 4]


def test_jitter_shortens_by_at_most_its_share() -> None:
    delays = [d.delay for d in crash_loop(POLICY, 3, rand=0.999999)]
    assert all(step * (1 - JITTER) <= d < step for d, step in zip(delays, [1, 2, 4], strict=True))


def test_clean_exit_after_min_uptime_restarts_at_once() -> None:
    decision = decide(POLICY, History(), exit_code=0, uptime=10.0, now=100.0, rand=0.5)
    assert (decision.action, decision.delay, decision.attempt) == (Action.RESTART, 0.0, 0)


def test_clean_exit_before_min_uptime_backs_off() -> None:
    decision = decide(POLICY, History(), exit_code=0, uptime=2.0, now=100.0, rand=0.0)
    assert decision.delay == 1.0
    assert "before" in decision.reason


def test_failure_backs_off_even_after_a_long_run_but_from_the_start() -> None:
    history = History(failures=5)
    decision = decide(POLICY, history, exit_code=1, uptime=61.0, now=100.0, rand=0.0)
    assert (decision.delay, decision.attempt) == (1.0, 1)


def test_short_run_keeps_the_sequence_going() -> None:
    history = History(failures=5)
    decision = decide(POLICY, history, exit_code=1, uptime=59.0, now=100.0, rand=0.0)
    assert (decision.delay, decision.attempt) == (32.0, 6)


def test_gives_up_past_max_restarts_within_the_window() -> None:
    policy = default_policy(backoff_initial=1, backoff_max=1, max_restarts=3, restart_window=600)
    decisions = crash_loop(policy, 4)
    assert [d.action for d in decisions] == [Action.RESTART] * 3 + [Action.GIVE_UP]
    assert "3 restarts within 600 s" in decisions[-1].reason


def test_restarts_outside_the_window_do_not_count() -> None:
    policy = default_policy(backoff_initial=1, backoff_max=1, max_restarts=2, restart_window=10)
    history = History(failures=1, restarts=(0.0, 1.0))
    decision = decide(policy, history, exit_code=1, uptime=1, now=20.0, rand=0)
    assert decision.action is Action.RESTART
    assert decision.history.restarts == (20.0,)


def test_no_limit_never_gives_up() -> None:
    assert all(d.action is Action.RESTART for d in crash_loop(POLICY, 200))


@given(
    initial=st.floats(0.01, 100),
    factor=st.floats(1, 1000),
    failures=st.integers(1, 10_000),
    rand=st.floats(0, 1, exclude_max=True),
)
def test_delay_is_always_within_jitter_of_the_capped_step(
    initial: float, factor: float, failures: int, rand: float
) -> None:
    policy = default_policy(backoff_initial=initial, backoff_max=initial * factor)
    step = min(initial * 2.0 ** min(failures - 1, 62), policy.backoff_max)
    delay = backoff_delay(policy, failures, rand)
    assert step * (1 - JITTER) - 1e-9 <= delay <= step


def test_the_defaults_are_the_contracts() -> None:
    assert (POLICY.restart, POLICY.min_uptime, POLICY.backoff_initial, POLICY.backoff_max) == (
        Restart.ALWAYS, 10.0, 1.0, 60.0,
    )  # fmt: skip
    assert (POLICY.reset_after, POLICY.max_restarts, POLICY.restart_window) == (60.0, 0, 600.0)


@pytest.mark.parametrize(("restart", "code", "action"), [
    (Restart.ON_FAILURE, 0, Action.EXIT),
    (Restart.ON_FAILURE, 3, Action.RESTART),
    (Restart.NEVER, 0, Action.EXIT),
    (Restart.NEVER, 3, Action.EXIT),
    (Restart.ALWAYS, 0, Action.RESTART),
])  # fmt: skip
def test_restart_policies_have_dockers_meanings(
    restart: Restart, code: int, action: Action
) -> None:
    policy = default_policy(restart=restart)
    decision = decide(policy, History(), exit_code=code, uptime=30.0, now=100.0, rand=0.0)
    assert decision.action is action


def test_a_memory_recycle_restarts_at_once_and_is_no_failure() -> None:
    history = History(failures=3, restarts=(90.0,))
    decision = decide(
        POLICY, history, exit_code=143, uptime=5.0, now=100.0, rand=0.0, cause=Cause.MEMORY
    )
    assert (decision.action, decision.delay, decision.probe_first) == (Action.RESTART, 0.0, False)
    assert decision.history.failures == 3


def test_a_watchdog_stop_is_a_failure_that_probes_first() -> None:
    decision = decide(
        POLICY, History(), exit_code=0, uptime=50.0, now=100.0, rand=0.0, cause=Cause.WATCHDOG
    )
    assert (decision.action, decision.delay, decision.attempt) == (Action.RESTART, 1.0, 1)
    assert decision.probe_first
    assert decision.reason == "watchdog"


def test_a_failure_probes_the_dependencies_first_a_clean_exit_does_not() -> None:
    failed = decide(POLICY, History(), exit_code=1, uptime=1.0, now=1.0, rand=0.0)
    clean = decide(POLICY, History(), exit_code=0, uptime=20.0, now=20.0, rand=0.0)
    assert failed.probe_first
    assert not clean.probe_first


@pytest.mark.parametrize(("code", "cause", "signalled", "oom", "reason"), [
    (0, None, False, False, Reason.EXIT),
    (3, None, False, False, Reason.EXIT),
    (143, None, True, False, Reason.SIGNAL),
    (137, None, True, True, Reason.OOM_KILL),
    (143, None, True, True, Reason.SIGNAL),  # not a SIGKILL: not the OOM killer's
    (137, Cause.STOP, True, False, Reason.STOP),
    (0, Cause.WATCHDOG, False, False, Reason.WATCHDOG),
    (137, Cause.MEMORY, True, True, Reason.MEMORY),
    (0, Cause.LEADERSHIP, False, False, Reason.STOP),
])  # fmt: skip
def test_exit_reasons(
    code: int, cause: Cause | None, signalled: bool, oom: bool, reason: Reason
) -> None:
    assert exit_reason(code, cause, signalled=signalled, oom_killed=oom) is reason


def test_liveness_deadlines() -> None:
    timeouts = {"watchdog_timeout": 5.0, "ready_timeout": 10.0}
    assert overdue(4.9, started=0, last_heartbeat=None, ready=True, **timeouts) is None
    expired = overdue(5.0, started=0, last_heartbeat=None, ready=True, **timeouts)
    assert expired is not None
    assert expired.event == "watchdog_expired"
    assert overdue(7.0, started=0, last_heartbeat=3.0, ready=True, **timeouts) is None
    late = overdue(10.0, started=0, last_heartbeat=9.0, ready=False, **timeouts)
    assert late is not None
    assert late.event == "ready_timeout"
    assert overdue(1e9, started=0, last_heartbeat=None, ready=False, watchdog_timeout=0,
                   ready_timeout=0) is None  # fmt: skip
