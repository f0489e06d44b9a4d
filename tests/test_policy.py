"""Restart decisions as values, driven by a fake clock and fixed randomness."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from entrypoint.plan.policy import (
    JITTER,
    Action,
    Decision,
    History,
    RestartPolicy,
    backoff_delay,
    decide,
)

POLICY = RestartPolicy(
    min_uptime=10, backoff_initial=1, backoff_max=60, reset_after=60, max_restarts=0
)


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
    policy = RestartPolicy(backoff_initial=1, backoff_max=1, max_restarts=3, restart_window=600)
    decisions = crash_loop(policy, 4)
    assert [d.action for d in decisions] == [Action.RESTART] * 3 + [Action.GIVE_UP]
    assert "3 restarts within 600 s" in decisions[-1].reason


def test_restarts_outside_the_window_do_not_count() -> None:
    policy = RestartPolicy(backoff_initial=1, backoff_max=1, max_restarts=2, restart_window=10)
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
    policy = RestartPolicy(backoff_initial=initial, backoff_max=initial * factor)
    step = min(initial * 2.0 ** min(failures - 1, 62), policy.backoff_max)
    delay = backoff_delay(policy, failures, rand)
    assert step * (1 - JITTER) - 1e-9 <= delay <= step
