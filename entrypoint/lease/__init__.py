"""The leader lease of singleton modes: at most one replica runs the child.

A lease is a key in the queue backend that one holder owns for `ttl` seconds
at a time. The supervisor of a standby calls `acquire()` until it gets it; the
leader calls `renew()` every ttl/3, and stops its child when a renewal says the
lease is lost, or when it could not renew for ttl - ttl/3 (the lease may expire
on the server soon after, so the child must be gone by then); a clean stop calls
`release()` so that a standby takes over at once instead of after the TTL.

Every successful `acquire()` also yields a fencing token (`lease.token`), an
integer that strictly grows with every new leader: the leader passes it to its
child, and a store that remembers the highest token it has seen can refuse the
writes of a leader that lost the lease without knowing it.

Backends: Redis (`redis://`, `rediss://`; a key set with NX PX, extended and
deleted only by its holder) and PostgreSQL (`postgresql://`, `postgres://`; a
session-level advisory lock on a connection of its own). Both take the
`Dependency` parsed once by `entrypoint.plan.urls`, never a URL text.
`open_lease` only validates: no I/O happens before the first call.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from typing import TYPE_CHECKING, Protocol

from entrypoint.errors import ConfigError
from entrypoint.plan.leasing import lease_backend_problem
from entrypoint.plan.urls import Scheme

if TYPE_CHECKING:
    from entrypoint.lease.handoff import HandoffStore
    from entrypoint.plan.urls import Dependency

__all__ = [
    "Lease",
    "LeaseUnavailable",
    "default_holder",
    "lease_backend_problem",
    "lease_clock",
    "open_lease",
]


class LeaseUnavailable(Exception):
    """The lease backend could not be asked: unreachable, timed out, refused the login.

    The message is redacted and fit for a log line. `permanent` is True when
    retrying cannot help without a configuration change (authentication refused,
    unknown database); the caller still decides whether to keep trying.
    """

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class Lease(Protocol):
    """One holder's handle on one lease key.

    Every call is one attempt bounded by the timeout given to `open_lease`.
    `where` names the store (`Dependency.display`: no secret); `token` is the
    fencing token of the current tenure, None before an acquire, after a
    release and once a renewal said the lease is lost.
    """

    ttl: float
    where: str
    token: int | None

    def acquire(self) -> bool:
        """True when this holder now holds the lease (or already did); False when another does.

        A new tenure takes a new token, greater than every token handed out
        before for this key; acquiring again while still the holder keeps it.
        Raises LeaseUnavailable when the backend cannot be asked.
        """

    def renew(self) -> bool:
        """True: still ours, valid for a full ttl from the start of this call.

        False: lost (another holder has it, or it is gone). Raises
        LeaseUnavailable when the backend cannot be asked: the lease may still
        be ours until it expires, ttl after the last successful renewal.
        """

    def release(self) -> None:
        """Give the lease up if it is still ours; best effort, never raises."""

    def close(self) -> None:
        """Drop the connection (for PostgreSQL this ends the session, and with it the lock)."""


def default_holder() -> str:
    """`hostname:pid:random`: unique per process, readable in the backend by an operator."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def lease_clock() -> float:
    """Seconds on the clock lease deadlines must be measured with: it counts suspended time.

    CLOCK_MONOTONIC keeps running while a process is stopped (SIGSTOP, the
    cgroup freezer of `docker pause`), but on Linux it does not count the time
    the whole machine is suspended (a laptop's sleep, a VM suspended to RAM):
    a leader resumed after an hour would believe its lease still fresh, while
    the store's clock ran on. CLOCK_BOOTTIME counts both; elsewhere the
    monotonic clock is what there is.
    """
    return time.clock_gettime(_LEASE_CLOCK)


_LEASE_CLOCK: int = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)


def open_lease(dep: Dependency, key: str, ttl: float, *, holder: str, timeout: float) -> Lease:
    """The lease on `key` in the store `dep`; ConfigError when the store or a value cannot work.

    No I/O: the first connection is made by the first call on the lease.
    """
    purpose = "the leader lease"
    _validate(dep, purpose, ENTRYPOINT_LEASE_KEY=key, ttl=ttl, timeout=timeout, holder=holder)
    if dep.scheme is Scheme.POSTGRESQL:
        _import_postgres(dep, purpose)
        from entrypoint.lease.postgres import PostgresLease

        return PostgresLease(dep, key, ttl, holder=holder, timeout=timeout)
    from entrypoint.lease.redis import RedisLease

    return RedisLease(dep, key, ttl, holder=holder, timeout=timeout)


def open_handoff_store(dep: Dependency, key: str, ttl: float, *, timeout: float) -> HandoffStore:
    """The handoff store on `key` in `dep`; ConfigError when the store or a value cannot work.

    No I/O: the first connection is made by the first call.
    """
    purpose = "the handoff lease"
    _validate(dep, purpose, ENTRYPOINT_HANDOFF_KEY=key, ttl=ttl, timeout=timeout)
    if dep.scheme is Scheme.POSTGRESQL:
        _import_postgres(dep, purpose)
        from entrypoint.lease.postgres import PostgresHandoffStore

        return PostgresHandoffStore(dep, key, ttl, timeout=timeout)
    from entrypoint.lease.redis import RedisHandoffStore

    return RedisHandoffStore(dep, key, ttl, timeout=timeout)


def _validate(
    dep: Dependency, purpose: str, *, ttl: float, timeout: float, holder: str = "-", **key: str
) -> None:
    """ConfigError naming every value that cannot work (`key`: the key's variable and value)."""
    ((key_name, key_value),) = key.items()
    problems = []
    if not key_value:
        problems.append(f"{key_name} is empty")
    if not ttl > 0:
        problems.append(f"ENTRYPOINT_LEASE_TTL must be above 0 seconds, got {ttl}")
    if not timeout > 0:
        problems.append(f"the {purpose} timeout must be above 0 seconds, got {timeout}")
    if not holder:
        problems.append("the lease holder name is empty")
    problem = lease_backend_problem(dep, purpose)
    if problem is not None:
        problems.append(problem)
    if problems:
        raise ConfigError(problems)


def _import_postgres(dep: Dependency, purpose: str) -> None:
    """Import the PostgreSQL backend; ConfigError when psycopg cannot be imported."""
    try:
        import entrypoint.lease.postgres  # noqa: F401
    except ImportError:
        raise ConfigError(
            f"{dep.source}: {dep.display} needs psycopg for {purpose}, "
            "which is not installed: install entrypoint[postgres]"
        ) from None
