"""The leader lease of singleton modes: at most one replica runs the child.

A lease is a key in the queue backend that one holder owns for `ttl` seconds
at a time. The supervisor of a standby calls `acquire()` until it gets it; the
leader calls `renew()` every ttl/3, and stops its child when a renewal says the
lease is lost, or when it could not renew for ttl - ttl/3 (the lease may expire
on the server soon after, so the child must be gone by then); a clean stop calls
`release()` so that a standby takes over at once instead of after the TTL.

Backends: Redis (`redis://`, `rediss://`; a key set with NX PX, extended and
deleted only by its holder) and PostgreSQL (`postgresql://`, `postgres://`; a
session-level advisory lock on a connection of its own). `open_lease` only
parses and validates: no I/O happens before the first call.
"""

from __future__ import annotations

import os
import secrets
import socket
from typing import Protocol
from urllib.parse import urlsplit

from entrypoint.errors import ConfigError
from entrypoint.plan.redact import redact_url

REDIS_SCHEMES = ("redis", "rediss")
POSTGRES_SCHEMES = ("postgresql", "postgres")


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
    """

    ttl: float

    def acquire(self) -> bool:
        """True when this holder now holds the lease (or already did); False when another does.

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


def open_lease(url: str, key: str, ttl: float, *, holder: str, timeout: float) -> Lease:
    """The lease for `url`'s scheme; ConfigError when the URL or a value cannot work."""
    problems = []
    if not key:
        problems.append("ENTRYPOINT_LEASE_KEY is empty")
    if not ttl > 0:
        problems.append(f"ENTRYPOINT_LEASE_TTL must be above 0 seconds, got {ttl}")
    if not timeout > 0:
        problems.append(f"the lease timeout must be above 0 seconds, got {timeout}")
    if not holder:
        problems.append("the lease holder name is empty")
    if problems:
        raise ConfigError(problems)
    scheme = urlsplit(url).scheme.lower()
    if scheme in REDIS_SCHEMES:
        from entrypoint.lease.redis import RedisLease, parse_redis_url

        return RedisLease(parse_redis_url(url), key, ttl, holder=holder, timeout=timeout)
    if scheme in POSTGRES_SCHEMES:
        try:
            from entrypoint.lease.postgres import PostgresLease
        except ImportError:
            raise ConfigError(
                f"the lease URL {redact_url(url)} needs psycopg, which is not installed: "
                "install entrypoint[postgres]"
            ) from None
        return PostgresLease(url, key, ttl, holder=holder, timeout=timeout)
    shown = f"{scheme}://" if scheme else "(none)"
    raise ConfigError(
        f"the lease URL {redact_url(url)} has an unsupported scheme {shown}: "
        "use redis://, rediss://, postgresql:// or postgres://"
    )
