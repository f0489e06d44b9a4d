"""The Redis lease: `SET key holder NX PX ttl`, extended and deleted only by its holder.

The value of the key is the holder's name, so a holder that lost the lease
(the key expired and another replica set it) can neither extend nor delete the
new holder's lease: both go through a Lua script that compares first, atomically.
Taking the lease and drawing its fencing token (`INCR <key>:token`) happen in
one script, so no two tenures share a token and none goes backwards. The
counter key has no expiry: it must outlive every lease (a Redis that evicts
keys without a TTL, `maxmemory-policy allkeys-*`, or a FLUSHDB, starts it over).

One connection is kept between calls and opened again after any failure; every
call (connect, TLS, AUTH, SELECT and the command included) is bounded by one
deadline. Host, port, credentials, database and TLS come from the `Dependency`
(`rediss://` is TLS, checked as the Redis probe checks it).
"""

from __future__ import annotations

import contextlib
import json
import math
import secrets
import socket
import ssl
import time
from typing import TYPE_CHECKING

from entrypoint.lease import LeaseUnavailable
from entrypoint.lease.handoff import HolderInfo, ReplicaInfo, ReplicaState, hold_ms, parse_state
from entrypoint.plan.redact import redact_text
from entrypoint.plan.urls import DEFAULT_PORTS, Scheme
from entrypoint.probes._net import tls_context, verify_tls
from entrypoint.probes.resp import RedisConnection, RedisProtocolError, RedisReplyError

if TYPE_CHECKING:
    from collections.abc import Callable

    from entrypoint.plan.urls import Dependency
    from entrypoint.probes.resp import Reply

    Connect = Callable[[Dependency, float], RedisConnection]

# KEYS[1] the lease key, KEYS[2] its token counter; ARGV[1] the holder, ARGV[2]
# the TTL in ms. Returns the holder's token, or 0 when another holds the lease.
ACQUIRE_SCRIPT = """
local current = redis.call('GET', KEYS[1])
if current == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return redis.call('INCR', KEYS[2])
end
if current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  local token = tonumber(redis.call('GET', KEYS[2]))
  if token == nil then
    return redis.call('INCR', KEYS[2])
  end
  return token
end
return 0
"""
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


def token_key(key: str) -> str:
    """The counter that numbers the tenures of `key`."""
    return f"{key}:token"


def connect_to(dep: Dependency, timeout: float) -> RedisConnection:
    """A connection to `dep`'s host (TLS for rediss://), not yet authenticated."""
    port = dep.port or DEFAULT_PORTS[Scheme.REDIS]
    sock = socket.create_connection((dep.host, port), timeout=timeout)
    try:
        if dep.scheme is Scheme.REDISS:
            context = tls_context(verify_tls(dep.options))
            sock = context.wrap_socket(sock, server_hostname=dep.host)
    except BaseException:
        sock.close()
        raise
    return RedisConnection.from_socket(sock)


class RedisLink:
    """One kept connection to the Redis of `dep`; every call bounded by one deadline.

    AUTH and SELECT are sent on each new connection; any failure closes it.
    Errors are LeaseUnavailable, naming `dep.display` and masking `dep.secrets`.
    """

    def __init__(
        self,
        dep: Dependency,
        *,
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
        connect: Connect = connect_to,
    ) -> None:
        self.dep = dep
        self.timeout = timeout
        self.where = dep.display
        self._clock = clock
        self._connect = connect
        self._conn: RedisConnection | None = None

    def call(self, *args: str | int) -> Reply:
        """One command, within the timeout from now."""
        deadline = self._clock() + self.timeout
        try:
            conn = self._connection(deadline)
            conn.settimeout(self._remaining(deadline))
            return conn.command(*args)
        except RedisReplyError as exc:
            self.close()
            permanent = exc.code in _PERMANENT_CODES or str(exc).startswith(_PERMANENT_ERRS)
            raise self.unavailable(str(exc), permanent=permanent) from None
        except (OSError, RedisProtocolError) as exc:  # socket.timeout and ssl errors included
            self.close()
            raise self.unavailable(_describe(exc)) from None

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(OSError):
                conn.close()

    def unavailable(self, reason: str, *, permanent: bool = False) -> LeaseUnavailable:
        text = f"{self.where}: {reason}".replace("\r", " ").replace("\n", " ")
        return LeaseUnavailable(redact_text(text, self.dep.secrets), permanent=permanent)

    def _connection(self, deadline: float) -> RedisConnection:
        if self._conn is not None:
            return self._conn
        dep = self.dep
        conn = self._connect(dep, self._remaining(deadline))
        try:
            if dep.password is not None:
                conn.settimeout(self._remaining(deadline))
                if dep.username:
                    conn.command("AUTH", dep.username, dep.password)
                else:
                    conn.command("AUTH", dep.password)
            if dep.database is not None and int(dep.database) != 0:
                conn.settimeout(self._remaining(deadline))
                conn.command("SELECT", dep.database)
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


class RedisLease:
    """One holder's lease on `key` in the Redis of `dep`."""

    def __init__(
        self,
        dep: Dependency,
        key: str,
        ttl: float,
        *,
        holder: str,
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
        connect: Connect = connect_to,
    ) -> None:
        self.key = key
        self.ttl = ttl
        self.holder = holder
        self.timeout = timeout
        self.where = dep.display
        self.token: int | None = None
        self._ttl_ms = max(1, round(ttl * 1000))
        self._link = RedisLink(dep, timeout=timeout, clock=clock, connect=connect)

    def acquire(self) -> bool:
        reply = self._link.call(
            "EVAL", ACQUIRE_SCRIPT, 2, self.key, token_key(self.key), self.holder, self._ttl_ms
        )
        if isinstance(reply, int) and reply > 0:
            self.token = reply
            return True
        self.token = None
        return False

    def renew(self) -> bool:
        reply = self._link.call("EVAL", RENEW_SCRIPT, 1, self.key, self.holder, self._ttl_ms)
        if reply != 1:
            self.token = None
        return reply == 1

    def release(self) -> None:
        self.token = None
        with contextlib.suppress(LeaseUnavailable):  # else the key expires within the TTL
            self._link.call("EVAL", RELEASE_SCRIPT, 1, self.key, self.holder)

    def close(self) -> None:
        self._link.close()


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


# -- the handoff store ----------------------------------------------------------

# KEYS[1] the handoff key; ARGV[1] our value, ARGV[2] the expiry in ms.
HOLD_SCRIPT = """
local current = redis.call('GET', KEYS[1])
if current == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""
# Registrations: one hash field per replica, "<expires ms> <state> <stop
# timeout> <saw handoff 0|1>", expiry on the server's clock (TIME), so that
# replicas' clocks do not matter. KEYS[1] the replicas hash, KEYS[2] the
# handoff key; ARGV[1] the replica, ARGV[2] its TTL in ms, ARGV[3] its state
# ('' keeps the stored one), ARGV[4] its stop timeout (the same). Returns whether the
# handoff lease is held, as stored with the registration.
REGISTER_SCRIPT = """
if redis.replicate_commands then redis.replicate_commands() end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local ttl = tonumber(ARGV[2])
local active = redis.call('EXISTS', KEYS[2])
local old = redis.call('HGET', KEYS[1], ARGV[1])
local state, stop_timeout = ARGV[3], ARGV[4]
if state == '' then
  state = old and string.match(old, '^%d+ (%S+)') or 'running'
end
if stop_timeout == '' then
  stop_timeout = old and string.match(old, '^%d+ %S+ (%S+)') or '0'
end
if not old then
  -- a new registration sweeps the lapsed ones (replicas that went away)
  local all = redis.call('HGETALL', KEYS[1])
  for i = 1, #all, 2 do
    local expires = tonumber(string.match(all[i + 1], '^(%d+)'))
    if not expires or expires <= now then redis.call('HDEL', KEYS[1], all[i]) end
  end
end
local value = string.format('%.0f %s %s %d', now + ttl, state, stop_timeout, active)
redis.call('HSET', KEYS[1], ARGV[1], value)
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return active
"""
# KEYS[1] the replicas hash. Returns {now ms, id, value, id, value...} of the
# live registrations, and drops the lapsed ones.
REPLICAS_SCRIPT = """
if redis.replicate_commands then redis.replicate_commands() end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local live = {string.format('%.0f', now)}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local expires = tonumber(string.match(all[i + 1], '^(%d+)'))
  if expires and expires > now then
    table.insert(live, all[i])
    table.insert(live, all[i + 1])
  else
    redis.call('HDEL', KEYS[1], all[i])
  end
end
return live
"""


def replicas_key(key: str) -> str:
    """The hash of the replicas registered for the handoff key `key`."""
    return f"{key}:replicas"


class RedisHandoffStore:
    """The handoff lease `key` and its replicas' registrations in the Redis of `dep`."""

    def __init__(
        self,
        dep: Dependency,
        key: str,
        ttl: float,
        *,
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
        connect: Connect = connect_to,
    ) -> None:
        self.key = key
        self.ttl = ttl
        self.where = dep.display
        self._link = RedisLink(dep, timeout=timeout, clock=clock, connect=connect)
        self._value: str | None = None
        self._ttls: dict[str, float] = {}  # each replica's TTL, from its last registration

    # -- the handoff side

    def hold(self, info: HolderInfo) -> bool:
        value = self._value or json.dumps(
            {"host": info.host, "pid": info.pid, "since": info.since, "id": secrets.token_hex(8)}
        )
        reply = self._link.call("EVAL", HOLD_SCRIPT, 1, self.key, value, hold_ms(self.ttl))
        if reply == 1:
            self._value = value
            return True
        self._value = None
        return False

    def renew(self) -> bool:
        if self._value is None:
            return False
        reply = self._link.call("EVAL", RENEW_SCRIPT, 1, self.key, self._value, hold_ms(self.ttl))
        if reply != 1:
            self._value = None
        return reply == 1

    def release(self) -> None:
        value, self._value = self._value, None
        if value is not None:
            with contextlib.suppress(LeaseUnavailable):  # else it expires by itself
                self._link.call("EVAL", RELEASE_SCRIPT, 1, self.key, value)

    def holder(self) -> HolderInfo | None:
        reply = self._link.call("GET", self.key)
        if not isinstance(reply, bytes):
            return None
        return HolderInfo.from_json(reply.decode("utf-8", "replace"))

    # -- the replica side

    def register(
        self,
        replica_id: str,
        ttl: float,
        *,
        state: ReplicaState | None = None,
        stop_timeout: float | None = None,
    ) -> bool:
        self._ttls[replica_id] = ttl
        stop = "" if stop_timeout is None else repr(float(stop_timeout))
        reply = self._link.call(
            "EVAL", REGISTER_SCRIPT, 2, replicas_key(self.key), self.key,
            replica_id, max(1, round(ttl * 1000)), state or "", stop,
        )  # fmt: skip
        return reply == 1

    def report(self, replica_id: str, state: ReplicaState) -> bool:
        return self.register(replica_id, self._ttls.get(replica_id, self.ttl), state=state)

    def replicas(self) -> list[ReplicaInfo]:
        reply = self._link.call("EVAL", REPLICAS_SCRIPT, 1, replicas_key(self.key))
        if not isinstance(reply, list) or not reply:
            return []
        now = _number(reply[0])
        found = []
        for name, value in zip(reply[1::2], reply[2::2], strict=True):
            if not isinstance(name, bytes) or not isinstance(value, bytes):
                continue
            fields = value.decode("utf-8", "replace").split(" ")
            expires, state, stop_timeout, saw = [*fields, "", "", ""][:4]
            found.append(
                ReplicaInfo(
                    replica_id=name.decode("utf-8", "replace"),
                    state=parse_state(state),
                    stop_timeout=_number(stop_timeout),
                    expires_in=(_number(expires) - now) / 1000,
                    saw_handoff=saw == "1",
                )
            )
        return sorted(found, key=lambda r: r.replica_id)

    def handoff_active(self) -> bool:
        return self._link.call("EXISTS", self.key) == 1

    def close(self) -> None:
        self._link.close()


def _number(value: object) -> float:
    text = value.decode() if isinstance(value, bytes) else str(value)
    try:
        number = float(text)
    except ValueError:
        return 0.0
    return number if math.isfinite(number) else 0.0
