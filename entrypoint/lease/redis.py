"""The Redis lease: `SET key holder NX PX ttl`, extended and deleted only by its holder.

The value of the key is the holder's name, so a holder that lost the lease
(the key expired and another replica set it) can neither extend nor delete the
new holder's lease: both go through a Lua script that compares first, atomically.

One connection is kept between calls and opened again after any failure; every
call (connect, AUTH, SELECT and the command included) is bounded by one deadline.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from entrypoint.errors import ConfigError
from entrypoint.lease import LeaseUnavailable
from entrypoint.plan.redact import redact_text, redact_url
from entrypoint.probes.resp import RedisConnection, RedisProtocolError, RedisReplyError

if TYPE_CHECKING:
    from collections.abc import Callable

    from entrypoint.probes.resp import Reply

DEFAULT_PORT = 6379

# KEYS[1] the lease key, ARGV[1] the holder, ARGV[2] the TTL in milliseconds.
RENEW_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# Replies after which retrying with the same configuration cannot succeed.
_PERMANENT_CODES = frozenset({"WRONGPASS", "NOAUTH", "NOPERM"})
# AUTH sent to a server without a password; EVAL renamed away or disabled.
_PERMANENT_ERRS = ("ERR AUTH", "ERR unknown command", "ERR DB index is out of range")


@dataclass(frozen=True)
class RedisTarget:
    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None
    db: int

    @property
    def where(self) -> str:
        scheme = "rediss" if self.tls else "redis"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}/{self.db}"


def parse_redis_url(url: str) -> RedisTarget:
    """`redis[s]://[[user]:password@]host[:port][/db]`, %-escapes decoded; ConfigError otherwise."""
    shown = redact_url(url)
    try:
        parts = urlsplit(url)
        port = parts.port or DEFAULT_PORT
    except ValueError as exc:
        raise ConfigError(f"the lease URL {shown} is malformed: {exc}") from None
    if parts.scheme.lower() not in ("redis", "rediss"):
        raise ConfigError(f"the lease URL {shown} is not a redis:// or rediss:// URL")
    if not parts.hostname:
        raise ConfigError(f"the lease URL {shown} has no host")
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise ConfigError(
            f"the lease URL {shown} has {path!r} as its database: use a number, as in /0"
        )
    return RedisTarget(
        host=parts.hostname,
        port=port,
        tls=parts.scheme.lower() == "rediss",
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        db=int(path) if path else 0,
    )


class RedisLease:
    """One holder's lease on `key` in the Redis at `target`."""

    def __init__(
        self,
        target: RedisTarget,
        key: str,
        ttl: float,
        *,
        holder: str,
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
        connect: Callable[..., RedisConnection] = RedisConnection,
    ) -> None:
        self.target = target
        self.key = key
        self.ttl = ttl
        self.holder = holder
        self.timeout = timeout
        self.where = target.where
        self._ttl_ms = max(1, round(ttl * 1000))
        self._clock = clock
        self._connect = connect
        self._conn: RedisConnection | None = None

    def acquire(self) -> bool:
        deadline = self._clock() + self.timeout
        if self._call(deadline, "SET", self.key, self.holder, "NX", "PX", self._ttl_ms) == "OK":
            return True
        # Set already: by this holder (acquire called again while leader) or by another.
        return self._extend(deadline)

    def renew(self) -> bool:
        return self._extend(self._clock() + self.timeout)

    def release(self) -> None:
        deadline = self._clock() + self.timeout
        with contextlib.suppress(LeaseUnavailable):  # else the key expires within the TTL
            self._call(deadline, "EVAL", RELEASE_SCRIPT, 1, self.key, self.holder)

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(OSError):
                conn.close()

    def _extend(self, deadline: float) -> bool:
        reply = self._call(deadline, "EVAL", RENEW_SCRIPT, 1, self.key, self.holder, self._ttl_ms)
        return reply == 1

    def _call(self, deadline: float, *args: str | int) -> Reply:
        """One command within `deadline`; any failure closes the connection."""
        try:
            conn = self._connection(deadline)
            conn.settimeout(self._remaining(deadline))
            return conn.command(*args)
        except RedisReplyError as exc:
            self.close()
            permanent = exc.code in _PERMANENT_CODES or str(exc).startswith(_PERMANENT_ERRS)
            raise self._unavailable(str(exc), permanent=permanent) from None
        except (OSError, RedisProtocolError) as exc:  # socket.timeout and ssl errors included
            self.close()
            raise self._unavailable(_describe(exc)) from None

    def _connection(self, deadline: float) -> RedisConnection:
        if self._conn is not None:
            return self._conn
        target = self.target
        conn = self._connect(
            target.host, target.port, timeout=self._remaining(deadline), tls=target.tls
        )
        try:
            if target.password:
                conn.settimeout(self._remaining(deadline))
                if target.username:
                    conn.command("AUTH", target.username, target.password)
                else:
                    conn.command("AUTH", target.password)
            if target.db:
                conn.settimeout(self._remaining(deadline))
                conn.command("SELECT", target.db)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _remaining(self, deadline: float) -> float:
        left = deadline - self._clock()
        if left <= 0:
            raise TimeoutError("timed out")
        return left

    def _unavailable(self, reason: str, *, permanent: bool = False) -> LeaseUnavailable:
        secrets = [s for s in (self.target.password,) if s]
        return LeaseUnavailable(
            redact_text(f"redis {self.where}: {reason}", secrets), permanent=permanent
        )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host ({exc.strerror})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__
