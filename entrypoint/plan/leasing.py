"""Pure decisions about leases: which store can hold one, and how long a leader may act.

No socket, no clock: callers pass the dependency and the times. The lease
backends (`entrypoint/lease/`) and the planner both ask here, so that a store
the lease cannot use is reported when the plan is built (`explain`, `check`),
with the same words the lease would use.
"""

from __future__ import annotations

from entrypoint.plan.urls import Dependency, Scheme, driver_available

LEASE_SCHEMES = frozenset({Scheme.REDIS, Scheme.REDISS, Scheme.POSTGRESQL})
# libpq's sslmode values; anything else fails only at connect time in libpq.
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")

# A leader acts for at most this much of the TTL after the START of its last
# successful renewal. The server let the key live a full TTL from the moment
# it processed that renewal, which is later: the remaining third is the margin
# for stopping the child and for clocks that run at slightly different rates.
ACT_FRACTION = 2 / 3

DEFAULT_HANDOFF_MODE = "worker"


def lease_backend_problem(dep: Dependency, purpose: str = "the leader lease") -> str | None:
    """Why `dep` cannot hold `purpose`, as one line naming its source, or None when it can.

    Checks the scheme (Redis or PostgreSQL), psycopg for PostgreSQL, and the
    values of options the lease passes on (sslmode). Never shows a secret:
    the dependency is named by `dep.display`.
    """
    where = f"{dep.source}: {dep.display}"
    if dep.scheme not in LEASE_SCHEMES:
        return (
            f"{where} cannot hold {purpose} ({dep.scheme}): set ENTRYPOINT_LEASE_URL "
            "to a redis://, rediss://, postgresql:// or postgres:// URL"
        )
    if dep.scheme is Scheme.POSTGRESQL:
        if not driver_available("psycopg"):
            return (
                f"{where} needs psycopg for {purpose}, which is not installed: "
                "install entrypoint[postgres]"
            )
        sslmode = dep.option("sslmode")
        if sslmode is not None and sslmode not in SSLMODES:
            return f"{where} has sslmode={sslmode[:20]!r}: use one of {', '.join(SSLMODES)}"
    return None


def leader_acts_until(last_renewed: float, ttl: float) -> float:
    """The time (same clock as `last_renewed`) after which the leader must no longer act."""
    return last_renewed + ttl * ACT_FRACTION


def leader_may_act(*, last_renewed: float, ttl: float, now: float) -> bool:
    """Whether a leader whose last successful renewal started at `last_renewed` may still act.

    The frozen-leader guard. A process stopped past its TTL (SIGSTOP, `docker
    pause`, a suspended VM) wakes up believing it leads; another replica may
    have taken the lease meanwhile. So this is the first thing a leader asks
    on every wakeup, before any other work: False means stop the child now
    and log `leader_lost`, whatever the wakeup was for. `last_renewed` and
    `now` must come from one clock that keeps counting while the process is
    stopped or the machine suspended (see `entrypoint.lease.lease_clock`).
    """
    return now < leader_acts_until(last_renewed, ttl)


def default_handoff_key(mode: str | None) -> str:
    """`entrypoint:handoff:<mode>`; the mode defaults to `worker` (what `handoff --store` uses)."""
    return f"entrypoint:handoff:{mode or DEFAULT_HANDOFF_MODE}"
