"""Supervision decisions, as pure functions over frozen values.

After each exit of the child the supervisor asks `decide` what to do: restart
at once, restart after a delay (probing the dependencies first when the exit
was a failure), end with the child's status, or give up. Why the child ended
is `exit_reason`; whether a heartbeat or READY=1 is overdue is `liveness_due`.
Time comes in as numbers (a monotonic clock read by the caller) and randomness
as a number in [0, 1), so every decision can be replayed in a test.
"""

from __future__ import annotations

from entrypoint.records import StrEnum, dataclass, replace

JITTER = 0.2  # a delay is drawn from [80 %, 100 %] of its exponential step
SIGKILL = 9


class Restart(StrEnum):
    """When a child that exited by itself is started again (Docker's restart policies)."""

    ALWAYS = "always"
    ON_FAILURE = "on-failure"  # exit 0 ends the entrypoint with 0: run to completion
    NEVER = "never"  # any exit ends it with the child's status


class Cause(StrEnum):
    """Why the entrypoint stopped the child, when it did."""

    STOP = "stop"  # a stop signal: the entrypoint ends
    WATCHDOG = "watchdog"  # no heartbeat, or no READY=1, in time: a failure
    MEMORY = "memory"  # over ENTRYPOINT_MAX_RSS: recycled, not a failure
    LEADERSHIP = "leadership"  # the lease was lost, or the leader's flag changed
    HANDOFF = "handoff"  # a developer's worker takes the queue


class Reason(StrEnum):
    """`child_exited`'s `reason`, and the label of entrypoint_child_exits_total."""

    EXIT = "exit"  # it exited by itself
    SIGNAL = "signal"  # a signal from someone else ended it
    OOM_KILL = "oom_kill"  # the kernel's OOM killer
    WATCHDOG = "watchdog"
    MEMORY = "memory"
    STOP = "stop"


class Action(StrEnum):
    RESTART = "restart"
    EXIT = "exit"  # end with the child's status (restart policy on-failure/never)
    GIVE_UP = "give_up"


@dataclass(frozen=True)
class RestartPolicy:
    """The restart settings (defaults: settings.OPTIONS, the one place they live)."""

    restart: Restart
    min_uptime: float
    backoff_initial: float
    backoff_max: float
    reset_after: float
    max_restarts: int  # 0: no limit
    restart_window: float


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
    probe_first: bool = False  # a failure: the dependencies are probed before the restart


def exit_reason(
    exit_code: int, cause: Cause | None, *, signalled: bool, oom_killed: bool
) -> Reason:
    """Why the child ended: the entrypoint's cause when it stopped it, however it then died."""
    if cause is Cause.WATCHDOG:
        return Reason.WATCHDOG
    if cause is Cause.MEMORY:
        return Reason.MEMORY
    if cause is not None:
        return Reason.STOP
    if oom_killed and exit_code == 128 + SIGKILL:
        return Reason.OOM_KILL
    return Reason.SIGNAL if signalled else Reason.EXIT


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
    cause: Cause | None = None,
) -> Decision:
    """What to do after the child exited with `exit_code` after `uptime` seconds.

    `cause` is why the entrypoint stopped it, if it did (never Cause.STOP:
    after a stop nothing is decided, the entrypoint ends).
    """
    failures = 0 if uptime >= policy.reset_after else history.failures
    recent = tuple(t for t in history.restarts if now - t < policy.restart_window)
    if cause in (Cause.MEMORY, Cause.LEADERSHIP, Cause.HANDOFF):
        # Planned: the child did nothing wrong. Not a failure, not counted.
        return Decision(Action.RESTART, 0.0, 0, f"{cause}", replace(history, restarts=recent))
    failed = cause is Cause.WATCHDOG or exit_code != 0
    # By value: settings hand over the parsed text ("on-failure"), which is not the member.
    restart = Restart(policy.restart)
    if restart is Restart.NEVER:
        return Decision(Action.EXIT, 0.0, 0, "restart policy never", history)
    if cause is None and not failed and restart is Restart.ON_FAILURE:
        return Decision(Action.EXIT, 0.0, 0, "completed (restart policy on-failure)", history)
    if policy.max_restarts and len(recent) >= policy.max_restarts:
        return Decision(
            Action.GIVE_UP,
            0.0,
            failures,
            f"{len(recent)} restarts within {policy.restart_window:g} s",
            replace(history, restarts=recent),
        )
    if not failed and uptime >= policy.min_uptime:
        return Decision(Action.RESTART, 0.0, 0, "clean exit", History(failures, (*recent, now)))
    failures += 1
    if cause is Cause.WATCHDOG:
        reason = "watchdog"
    else:
        reason = "failed" if failed else f"exited 0 before {policy.min_uptime:g} s"
    delay = backoff_delay(policy, failures, rand)
    return Decision(
        Action.RESTART,
        delay,
        failures,
        reason,
        History(failures, (*recent, now)),
        probe_first=failed,
    )


@dataclass(frozen=True)
class Overdue:
    """The child missed a liveness deadline."""

    event: str  # watchdog_expired or ready_timeout
    age: float  # seconds since its start or its last heartbeat


def liveness_due(
    *,
    started: float,
    last_heartbeat: float | None,
    ready: bool,
    watchdog_timeout: float,
    ready_timeout: float,
) -> float | None:
    """The next moment at which `overdue` may find something, if any (0 timeouts: off)."""
    due = []
    if watchdog_timeout > 0:
        due.append(max(started, last_heartbeat or started) + watchdog_timeout)
    if ready_timeout > 0 and not ready:
        due.append(started + ready_timeout)
    return min(due) if due else None


def overdue(
    now: float,
    *,
    started: float,
    last_heartbeat: float | None,
    ready: bool,
    watchdog_timeout: float,
    ready_timeout: float,
) -> Overdue | None:
    """Whether the child is overdue now: no heartbeat for the watchdog timeout, or no READY=1.

    A heartbeat's age counts from the later of the child's start and its last
    heartbeat: a new child gets the full timeout.
    """
    if ready_timeout > 0 and not ready and now - started >= ready_timeout:
        return Overdue("ready_timeout", now - started)
    if watchdog_timeout > 0:
        age = now - max(started, last_heartbeat or started)
        if age >= watchdog_timeout:
            return Overdue("watchdog_expired", age)
    return None
