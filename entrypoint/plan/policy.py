"""Restart decisions, as pure functions over frozen values.

After each exit of the child the supervisor asks `decide` what to do: restart at
once, restart after a delay, or give up. Time comes in as numbers (a monotonic
clock read by the caller) and randomness as a number in [0, 1), so every
decision can be replayed in a test.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

JITTER = 0.2  # a delay is drawn from [80 %, 100 %] of its exponential step


class Action(StrEnum):
    RESTART = "restart"
    GIVE_UP = "give_up"


@dataclass(frozen=True)
class RestartPolicy:
    min_uptime: float = 10.0
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    reset_after: float = 60.0
    max_restarts: int = 0  # 0: no limit
    restart_window: float = 600.0


@dataclass(frozen=True)
class History:
    """What the policy remembers between exits."""

    failures: int = 0  # consecutive failed runs since the last reset
    restarts: tuple[float, ...] = ()  # monotonic times of the restarts inside the window


@dataclass(frozen=True)
class Decision:
    action: Action
    delay: float
    attempt: int  # the restart's number in the current backoff sequence (0: no backoff)
    reason: str
    history: History


def is_clean(exit_code: int, uptime: float, policy: RestartPolicy) -> bool:
    """A planned exit (a worker's --max-time recycle): status 0 after the minimum uptime."""
    return exit_code == 0 and uptime >= policy.min_uptime


def backoff_delay(policy: RestartPolicy, failures: int, rand: float) -> float:
    """The delay before restart number `failures` (1, 2, 3...) of a backoff sequence."""
    step = policy.backoff_initial * 2.0 ** min(failures - 1, 62)
    step = min(step, policy.backoff_max)
    return step * (1.0 - JITTER * rand)


def decide(
    policy: RestartPolicy,
    history: History,
    *,
    exit_code: int,
    uptime: float,
    now: float,
    rand: float,
) -> Decision:
    """What to do after a child exited with `exit_code` after `uptime` seconds."""
    failures = 0 if uptime >= policy.reset_after else history.failures
    recent = tuple(t for t in history.restarts if now - t < policy.restart_window)
    if policy.max_restarts and len(recent) >= policy.max_restarts:
        return Decision(
            Action.GIVE_UP,
            0.0,
            failures,
            f"{len(recent)} restarts within {policy.restart_window:g} s",
            replace(history, restarts=recent),
        )
    if is_clean(exit_code, uptime, policy):
        return Decision(Action.RESTART, 0.0, 0, "clean exit", History(failures, (*recent, now)))
    failures += 1
    reason = "failed" if exit_code else f"exited 0 before {policy.min_uptime:g} s"
    delay = backoff_delay(policy, failures, rand)
    return Decision(Action.RESTART, delay, failures, reason, History(failures, (*recent, now)))
