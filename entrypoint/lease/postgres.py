"""The PostgreSQL lease: a session-level advisory lock held on a connection of its own.

The lock lives as long as the server-side session that took it. So the leader
keeps one connection open, and "renew" means: the session still answers within
the timeout and still holds the lock (pg_locks). Ending the session, by a clean
close, a crash of the process or a drop by the server, frees the lock.

A partitioned leader cannot end its session, so the server must: the session
sets `idle_session_timeout` to the TTL (PostgreSQL 14 and later). The leader
sends a query every ttl/3, so its session is never idle that long unless the
leader can no longer reach the server; then the server ends the session, and
frees the lock, one TTL after the last query it received, even when a proxy or
NAT between them keeps the TCP connection looking alive. TCP keepalives and
`tcp_user_timeout` (server and client side) are set as well, for servers older
than 14 and for connections whose peer vanished. The leader's supervisor stops
its child by ttl - ttl/3 after its last successful renewal, before the server
can free the lock.

A query that times out is left in flight rather than abandoned: closing the
connection would free the lock while this process still runs its child. The
next call first collects that reply.

Everything is done with libpq's asynchronous calls (psycopg.pq), each wait in
`poll` bounded by the call's deadline: no call blocks longer than the timeout.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import select
import time
from typing import TYPE_CHECKING

import psycopg
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from entrypoint.errors import ConfigError
from entrypoint.lease import LeaseUnavailable
from entrypoint.plan.redact import redact_text, redact_url

if TYPE_CHECKING:
    from collections.abc import Callable

# Connection failures that retrying with the same URL cannot mend.
_PERMANENT_HINTS = (
    "authentication failed",
    "does not exist",
    "pg_hba.conf",
    "permission denied",
    "password authentication",
    "no password supplied",
)
IDLE_SESSION_TIMEOUT_SINCE = 140000
TCP_USER_TIMEOUT_SINCE = 120000


def lock_id(key: str) -> int:
    """The advisory lock's bigint for `key`: the first 8 bytes of its SHA-256, signed."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)


def keepalive_settings(ttl: float) -> tuple[int, int, int]:
    """(idle, interval, count) in whole seconds: a dead peer is noticed within about the TTL."""
    idle = max(1, math.floor(ttl / 3))
    interval = max(1, math.floor(ttl / 6))
    return idle, interval, 2


def session_settings(ttl: float, server_version: int) -> str:
    """The SET statements that make the server end a silent leader's session within the TTL."""
    idle, interval, count = keepalive_settings(ttl)
    ttl_ms = max(1, round(ttl * 1000))
    statements = [
        f"SET tcp_keepalives_idle = {idle}",
        f"SET tcp_keepalives_interval = {interval}",
        f"SET tcp_keepalives_count = {count}",
    ]
    if server_version >= TCP_USER_TIMEOUT_SINCE:
        statements.append(f"SET tcp_user_timeout = {ttl_ms}")
    if server_version >= IDLE_SESSION_TIMEOUT_SINCE:
        statements.append(f"SET idle_session_timeout = {ttl_ms}")
    return "; ".join(statements)


def build_conninfo(url: str, ttl: float, holder: str) -> str:
    """libpq's conninfo for the lease connection; ConfigError when `url` is not one libpq reads."""
    idle, interval, count = keepalive_settings(ttl)
    try:
        ports = str(conninfo_to_dict(url).get("port") or "")
        conninfo = make_conninfo(
            url,
            application_name=f"entrypoint lease {holder}"[:63],
            keepalives=1,
            keepalives_idle=idle,
            keepalives_interval=interval,
            keepalives_count=count,
            tcp_user_timeout=max(1, round(ttl * 1000)),
        )
    except psycopg.Error as exc:
        reason = redact_text(str(exc).strip().splitlines()[0] if str(exc).strip() else "")
        raise ConfigError(f"the lease URL {redact_url(url)} is malformed: {reason}") from None
    for port in filter(None, ports.split(",")):
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"the lease URL {redact_url(url)} has a bad port {port!r}")
    return conninfo


class _Timeout(Exception):
    pass


class _Broken(Exception):
    """The connection is gone: the session that held the lock, if any, is over."""


class _QueryFailed(Exception):
    """The server answered the query with an error; the session is still usable."""


class _Session:
    """One libpq connection driven asynchronously, every wait bounded by a deadline."""

    def __init__(self, pgconn: pq.abc.PGconn, clock: Callable[[], float]) -> None:
        self._pg = pgconn
        self._clock = clock
        self.in_flight = False

    @classmethod
    def connect(cls, conninfo: str, deadline: float, clock: Callable[[], float]) -> _Session:
        # libpq resolves a host name inside connect_start, outside this
        # deadline: the one wait not bounded here is a hanging DNS resolver.
        pg = pq.PGconn.connect_start(conninfo.encode())
        session = cls(pg, clock)
        try:
            if pg.status == pq.ConnStatus.BAD:
                raise _Broken(_error(pg.error_message))
            status = pq.PollingStatus.WRITING
            while status != pq.PollingStatus.OK:
                if status == pq.PollingStatus.FAILED:
                    raise _Broken(_error(pg.error_message))
                session._wait(write=status == pq.PollingStatus.WRITING, deadline=deadline)
                status = pq.PollingStatus(pg.connect_poll())
            pg.nonblocking = 1
        except BaseException:
            pg.finish()
            raise
        return session

    @property
    def server_version(self) -> int:
        return self._pg.server_version

    @property
    def backend_pid(self) -> int:
        return self._pg.backend_pid

    def query(self, sql: str, deadline: float) -> list[list[str | None]]:
        """Rows of the last statement of `sql`, as text; _Timeout leaves the query in flight."""
        if self.in_flight:
            self._collect(deadline)  # the reply to a query that timed out earlier
        try:
            self._pg.send_query(sql.encode())
        except psycopg.Error as exc:
            raise _Broken(_error(exc)) from None
        self.in_flight = True
        while True:
            try:
                unsent = self._pg.flush()
            except psycopg.Error as exc:
                raise _Broken(_error(exc)) from None
            if not unsent:
                break
            self._wait(write=True, deadline=deadline)
        return self._collect(deadline)

    def close(self) -> None:
        self._pg.finish()

    def _collect(self, deadline: float) -> list[list[str | None]]:
        rows: list[list[str | None]] = []
        failure: str | None = None
        while True:
            try:
                self._pg.consume_input()
                while not self._pg.is_busy():
                    result = self._pg.get_result()
                    if result is None:
                        self.in_flight = False
                        if self._pg.status == pq.ConnStatus.BAD:
                            raise _Broken(failure or _error(self._pg.error_message))
                        if failure is not None:
                            raise _QueryFailed(failure)
                        return rows
                    if result.status == pq.ExecStatus.TUPLES_OK:
                        rows = [
                            [_text(result.get_value(r, c)) for c in range(result.nfields)]
                            for r in range(result.ntuples)
                        ]
                    elif result.status in (pq.ExecStatus.FATAL_ERROR, pq.ExecStatus.BAD_RESPONSE):
                        failure = failure or _error(result.error_message)
            except psycopg.Error as exc:
                raise _Broken(_error(exc)) from None
            if self._pg.status == pq.ConnStatus.BAD:
                raise _Broken(_error(self._pg.error_message))
            self._wait(write=False, deadline=deadline)

    def _wait(self, *, write: bool, deadline: float) -> None:
        left = deadline - self._clock()
        if left <= 0:
            raise _Timeout
        poller = select.poll()
        poller.register(self._pg.socket, select.POLLOUT if write else select.POLLIN)
        if not poller.poll(math.ceil(left * 1000)):
            raise _Timeout


class PostgresLease:
    """One holder's advisory lock for `key` in the PostgreSQL at `url`."""

    def __init__(
        self,
        url: str,
        key: str,
        ttl: float,
        *,
        holder: str,
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.key = key
        self.ttl = ttl
        self.holder = holder
        self.timeout = timeout
        self.where = redact_url(url)
        self.lock_id = lock_id(key)
        self._conninfo = build_conninfo(url, ttl, holder)
        self._secrets = [str(v) for k, v in conninfo_to_dict(url).items() if k == "password" and v]
        self._clock = clock
        self._session: _Session | None = None
        self._held = False

    def acquire(self) -> bool:
        deadline = self._clock() + self.timeout
        if self._held and self._check(deadline):
            return True
        for attempt in (1, 2):
            fresh = self._session is None
            try:
                session = self._open(deadline)
                rows = session.query(f"SELECT pg_try_advisory_lock({self.lock_id})", deadline)
            except _Broken as exc:
                self._drop()
                # A kept standby connection may have been ended by the server
                # (idle timeout, restart): one more try on a new one.
                if fresh or attempt == 2:
                    raise self._unavailable(str(exc)) from None
                continue
            except _Timeout:
                # The lock may be granted on the server by now: ending the
                # session is what makes sure this holder does not keep it.
                self._drop()
                raise self._unavailable("timed out") from None
            except _QueryFailed as exc:
                raise self._unavailable(str(exc)) from None
            self._held = bool(rows) and rows[0][0] == "t"
            return self._held
        raise AssertionError("unreachable")  # pragma: no cover

    def renew(self) -> bool:
        if not self._held or self._session is None:
            return False
        return self._check(self._clock() + self.timeout)

    def release(self) -> None:
        if self._session is None:
            self._held = False
            return
        if self._held and not self._session.in_flight:
            # Best effort: closing the session below frees the lock as well.
            with contextlib.suppress(_Broken, _Timeout, _QueryFailed):
                self._session.query(
                    f"SELECT pg_advisory_unlock({self.lock_id})", self._clock() + self.timeout
                )
        self._drop()

    def close(self) -> None:
        self._drop()

    def _check(self, deadline: float) -> bool:
        """Whether this session still holds the lock; LeaseUnavailable when it cannot tell."""
        assert self._session is not None
        high, low = (self.lock_id >> 32) & 0xFFFFFFFF, self.lock_id & 0xFFFFFFFF
        # Only integers computed here go into the text: nothing to inject.
        sql = (
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"  # noqa: S608
            f" AND pid = pg_backend_pid() AND classid = {high} AND objid = {low}"
            " AND objsubid = 1"
        )
        try:
            rows = self._session.query(sql, deadline)
        except _Timeout:
            # Keep the session (and the query in flight): the lock stays ours
            # until the server ends the session.
            raise self._unavailable("timed out") from None
        except _Broken:
            self._drop()
            return False
        except _QueryFailed as exc:
            raise self._unavailable(str(exc)) from None
        held = bool(rows) and rows[0][0] != "0"
        if not held:
            self._drop()
        return held

    def _open(self, deadline: float) -> _Session:
        if self._session is not None:
            return self._session
        session = _Session.connect(self._conninfo, deadline, self._clock)
        try:
            session.query(session_settings(self.ttl, session.server_version), deadline)
        except _QueryFailed as exc:
            session.close()
            raise _Broken(str(exc)) from None
        except BaseException:
            session.close()
            raise
        self._session = session
        return session

    def _drop(self) -> None:
        self._held = False
        if self._session is not None:
            session, self._session = self._session, None
            session.close()

    def _unavailable(self, reason: str) -> LeaseUnavailable:
        lowered = reason.lower()
        permanent = any(hint in lowered for hint in _PERMANENT_HINTS)
        return LeaseUnavailable(
            redact_text(f"postgresql {self.where}: {reason}", self._secrets), permanent=permanent
        )


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", "replace")


def _error(source: object) -> str:
    text = source.decode("utf-8", "replace") if isinstance(source, bytes) else str(source)
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return "connection failed"
    # libpq prefixes server errors with their severity ("FATAL:  ...").
    return lines[0].removeprefix("FATAL:").removeprefix("ERROR:").strip()
