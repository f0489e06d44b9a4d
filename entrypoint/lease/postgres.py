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

Once the lock is granted, the same session draws the tenure's fencing token:
`INSERT ... ON CONFLICT DO UPDATE SET token = token + 1 RETURNING token` on
`entrypoint_lease_tokens` (created when missing). Only the holder of the lock
writes the row of its key, so tokens strictly grow from one leader to the next.

The connection is built from the `Dependency`'s fields as libpq keywords (host,
port, user, password, dbname, and the libpq options of the URL's query), never
from the URL text: the one URL grammar is `entrypoint.plan.urls`.

Everything is done with libpq's asynchronous calls (psycopg.pq), each wait in
`poll` bounded by the call's deadline: no call blocks longer than the timeout.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import secrets
import select
import time
from typing import TYPE_CHECKING

import psycopg
from psycopg import pq
from psycopg.conninfo import make_conninfo

from entrypoint.lease import LeaseUnavailable
from entrypoint.lease.handoff import HolderInfo, ReplicaInfo, ReplicaState, hold_ms, parse_state
from entrypoint.plan.redact import redact_text
from entrypoint.plan.urls import DEFAULT_PORTS, Scheme

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from entrypoint.plan.urls import Dependency

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


# The query options passed on to libpq as they are: TLS and session routing.
# Any other option of the URL (one meant for the application) is not libpq's.
LIBPQ_OPTIONS = frozenset({
    "sslmode", "sslrootcert", "sslcert", "sslkey", "sslcrl", "channel_binding",
    "gssencmode", "target_session_attrs", "options", "connect_timeout",
})  # fmt: skip
# The user the PostgreSQL probe logs in as when the URL names none.
DEFAULT_USER = "postgres"

# SQLSTATEs the token and handoff tables are created on, or raced for.
UNDEFINED_TABLE = "42P01"
CREATE_RACES = frozenset({"42P07", "23505"})  # duplicate_table; unique_violation on pg_type

TOKENS_TABLE = "entrypoint_lease_tokens"
CREATE_TOKENS = (
    f"CREATE TABLE IF NOT EXISTS {TOKENS_TABLE} (key text PRIMARY KEY, token bigint NOT NULL)"
)
NEXT_TOKEN = (
    f"INSERT INTO {TOKENS_TABLE} AS t (key, token) VALUES ($1, 1)"  # noqa: S608
    " ON CONFLICT (key) DO UPDATE SET token = t.token + 1 RETURNING token"
)


def build_conninfo(dep: Dependency, ttl: float, application_name: str) -> str:
    """libpq's conninfo for `dep`: its fields as keywords, keepalives sized for `ttl`."""
    idle, interval, count = keepalive_settings(ttl)
    user = dep.username or DEFAULT_USER
    params: dict[str, str | int | None] = {
        "host": dep.host,
        "port": dep.port or DEFAULT_PORTS[Scheme.POSTGRESQL],
        "user": user,
        "dbname": dep.database or user,
        "password": dep.password,  # None: libpq's own defaults (PGPASSWORD, .pgpass)
        **{name: value for name, value in dep.options if name in LIBPQ_OPTIONS},
    }
    params.update(
        application_name=application_name[:63],
        keepalives=1,
        keepalives_idle=idle,
        keepalives_interval=interval,
        keepalives_count=count,
        tcp_user_timeout=max(1, round(ttl * 1000)),
    )
    return make_conninfo("", **params)


class _Timeout(Exception):
    pass


class _Broken(Exception):
    """The connection is gone: the session that held the lock, if any, is over."""


class _QueryFailed(Exception):
    """The server answered the query with an error; the session is still usable."""

    def __init__(self, message: str, sqlstate: str = "") -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


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

    def query(
        self, sql: str, deadline: float, params: Sequence[str | None] | None = None
    ) -> list[list[str | None]]:
        """Rows of the last statement of `sql`, as text; _Timeout leaves the query in flight.

        With `params` (text values for $1, $2, ...), `sql` is one statement
        sent with the extended protocol: values never become SQL text.
        """
        if self.in_flight:
            self._collect(deadline)  # the reply to a query that timed out earlier
        try:
            if params is None:
                self._pg.send_query(sql.encode())
            else:
                values = [None if p is None else p.encode() for p in params]
                self._pg.send_query_params(sql.encode(), values)
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
        failure: _QueryFailed | None = None
        while True:
            try:
                self._pg.consume_input()
                while not self._pg.is_busy():
                    result = self._pg.get_result()
                    if result is None:
                        self.in_flight = False
                        if self._pg.status == pq.ConnStatus.BAD:
                            raise _Broken(
                                str(failure) if failure else _error(self._pg.error_message)
                            )
                        if failure is not None:
                            raise failure
                        return rows
                    if result.status == pq.ExecStatus.TUPLES_OK:
                        rows = [
                            [_text(result.get_value(r, c)) for c in range(result.nfields)]
                            for r in range(result.ntuples)
                        ]
                    elif result.status in (pq.ExecStatus.FATAL_ERROR, pq.ExecStatus.BAD_RESPONSE):
                        state = _text(result.error_field(pq.DiagnosticField.SQLSTATE)) or ""
                        failure = failure or _QueryFailed(_error(result.error_message), state)
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


def query_creating(
    session: _Session,
    sql: str,
    params: Sequence[str | None],
    creates: Sequence[str],
    deadline: float,
) -> list[list[str | None]]:
    """`sql` with `params`; when its table is missing, `creates` are run and it is sent again.

    The tables are created on first use rather than up front: a role that may
    use a table a DBA created need not be allowed to create one.
    """
    try:
        return session.query(sql, deadline, params)
    except _QueryFailed as exc:
        if exc.sqlstate != UNDEFINED_TABLE:
            raise
    for create in creates:
        try:
            session.query(create, deadline)
        except _QueryFailed as exc:
            if exc.sqlstate not in CREATE_RACES:  # another session created it meanwhile
                raise
    return session.query(sql, deadline, params)


class PostgresLease:
    """One holder's advisory lock for `key` in the PostgreSQL of `dep`."""

    def __init__(
        self,
        dep: Dependency,
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
        self.where = dep.display
        self.lock_id = lock_id(key)
        self.token: int | None = None
        self._conninfo = build_conninfo(dep, ttl, f"entrypoint lease {holder}")
        self._secrets = dep.secrets
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
            if not (rows and rows[0][0] == "t"):
                return False
            self.token = self._next_token(session, deadline)
            self._held = True
            return True
        raise AssertionError("unreachable")  # pragma: no cover

    def renew(self) -> bool:
        if not self._held or self._session is None:
            return False
        return self._check(self._clock() + self.timeout)

    def release(self) -> None:
        if self._session is None:
            self._held = False
            self.token = None
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

    def _next_token(self, session: _Session, deadline: float) -> int:
        """The new tenure's token, drawn while holding the lock; on failure the lock is let go."""
        try:
            rows = query_creating(session, NEXT_TOKEN, (self.key,), (CREATE_TOKENS,), deadline)
            return int(str(rows[0][0]))
        except (_Broken, _Timeout, _QueryFailed, IndexError, ValueError) as exc:
            # A leader without a token is not one: ending the session frees the lock.
            self._drop()
            reason = "timed out" if isinstance(exc, _Timeout) else str(exc)
            raise self._unavailable(
                f"cannot draw the fencing token ({TOKENS_TABLE}): {reason}"
            ) from None

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
        self.token = None
        if self._session is not None:
            session, self._session = self._session, None
            session.close()

    def _unavailable(self, reason: str) -> LeaseUnavailable:
        return unavailable(self.where, reason, self._secrets)


def unavailable(where: str, reason: str, secrets: Sequence[str]) -> LeaseUnavailable:
    """LeaseUnavailable naming `where`, `secrets` masked; permanent when retrying cannot mend it."""
    lowered = reason.lower()
    permanent = any(hint in lowered for hint in _PERMANENT_HINTS)
    return LeaseUnavailable(redact_text(f"{where}: {reason}", secrets), permanent=permanent)


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", "replace")


def _error(source: object) -> str:
    text = source.decode("utf-8", "replace") if isinstance(source, bytes) else str(source)
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return "connection failed"
    # libpq prefixes server errors with their severity ("FATAL:  ...").
    return lines[0].removeprefix("FATAL:").removeprefix("ERROR:").strip()


# -- the handoff store ----------------------------------------------------------

HANDOFF_TABLE = "entrypoint_handoff"
REPLICAS_TABLE = "entrypoint_handoff_replicas"
CREATE_HANDOFF = (
    f"CREATE TABLE IF NOT EXISTS {HANDOFF_TABLE} (key text PRIMARY KEY, holder text NOT NULL,"
    " host text NOT NULL, pid integer NOT NULL, since text NOT NULL,"
    " expires_at timestamptz NOT NULL)"
)
CREATE_REPLICAS = (
    f"CREATE TABLE IF NOT EXISTS {REPLICAS_TABLE} (key text NOT NULL, replica text NOT NULL,"
    " state text NOT NULL, stop_timeout double precision NOT NULL,"
    " saw_handoff boolean NOT NULL, expires_at timestamptz NOT NULL,"
    " PRIMARY KEY (key, replica))"
)
# Expiry on the server's clock: the clocks of the replicas and the handoff do not matter.
_IN_MS = "clock_timestamp() + {} * interval '1 millisecond'"
_LIVE = "expires_at > clock_timestamp()"
HOLD = (
    f"INSERT INTO {HANDOFF_TABLE} AS h (key, holder, host, pid, since, expires_at)"  # noqa: S608
    f" VALUES ($1, $2, $3, $4::integer, $5, {_IN_MS.format('$6::float8')})"
    " ON CONFLICT (key) DO UPDATE SET holder = excluded.holder, host = excluded.host,"
    " pid = excluded.pid, since = excluded.since, expires_at = excluded.expires_at"
    " WHERE h.holder = excluded.holder OR h.expires_at <= clock_timestamp()"
    " RETURNING 1"
)
RENEW = (
    f"UPDATE {HANDOFF_TABLE} SET expires_at = {_IN_MS.format('$3::float8')}"  # noqa: S608
    f" WHERE key = $1 AND holder = $2 AND {_LIVE} RETURNING 1"
)
RELEASE = f"DELETE FROM {HANDOFF_TABLE} WHERE key = $1 AND holder = $2"  # noqa: S608
HOLDER = f"SELECT host, pid, since FROM {HANDOFF_TABLE} WHERE key = $1 AND {_LIVE}"  # noqa: S608
ACTIVE = f"SELECT EXISTS (SELECT 1 FROM {HANDOFF_TABLE} WHERE key = $1 AND {_LIVE})"  # noqa: S608
REGISTER = (
    f"WITH active AS (SELECT EXISTS (SELECT 1 FROM {HANDOFF_TABLE}"  # noqa: S608
    f" WHERE key = $1 AND {_LIVE}) AS held),"
    f" registered AS (INSERT INTO {REPLICAS_TABLE} AS r"
    " (key, replica, state, stop_timeout, saw_handoff, expires_at)"
    " SELECT $1, $2, coalesce($3::text, 'running'), coalesce($4::float8, 0), held,"
    f" {_IN_MS.format('$5::float8')} FROM active"
    " ON CONFLICT (key, replica) DO UPDATE SET state = coalesce($3::text, r.state),"
    " stop_timeout = coalesce($4::float8, r.stop_timeout), saw_handoff = excluded.saw_handoff,"
    " expires_at = excluded.expires_at RETURNING 1)"
    " SELECT held FROM active"
)
# SKIP LOCKED: replicas registering at the same time never wait on the sweep.
REPLICAS = (
    f"WITH lapsed AS (DELETE FROM {REPLICAS_TABLE} WHERE (key, replica) IN"  # noqa: S608
    f" (SELECT key, replica FROM {REPLICAS_TABLE} WHERE key = $1"
    " AND expires_at <= clock_timestamp() FOR UPDATE SKIP LOCKED))"
    " SELECT replica, state, stop_timeout,"
    " extract(epoch FROM expires_at - clock_timestamp()), saw_handoff"
    f" FROM {REPLICAS_TABLE} WHERE key = $1 AND {_LIVE} ORDER BY replica"
)
_TABLES = (CREATE_HANDOFF, CREATE_REPLICAS)


class PostgresHandoffStore:
    """The handoff lease `key` and its replicas' registrations in the PostgreSQL of `dep`.

    Rows with an expiry on the server's clock, in two tables created on first
    use; one kept connection, opened again once when the server ended it.
    """

    def __init__(
        self,
        dep: Dependency,
        key: str,
        ttl: float,
        *,
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.key = key
        self.ttl = ttl
        self.timeout = timeout
        self.where = dep.display
        self._conninfo = build_conninfo(dep, ttl, "entrypoint handoff")
        self._secrets = dep.secrets
        self._clock = clock
        self._session: _Session | None = None
        self._holder: str | None = None
        self._ttls: dict[str, float] = {}  # each replica's TTL, from its last registration

    # -- the handoff side

    def hold(self, info: HolderInfo) -> bool:
        holder = self._holder or secrets.token_hex(8)
        rows = self._query(
            HOLD,
            (self.key, holder, info.host, str(info.pid), info.since, str(hold_ms(self.ttl))),
            creates=_TABLES,
        )
        self._holder = holder if rows else None
        return bool(rows)

    def renew(self) -> bool:
        if self._holder is None:
            return False
        rows = self._query(RENEW, (self.key, self._holder, str(hold_ms(self.ttl))), creates=_TABLES)
        if not rows:
            self._holder = None
        return bool(rows)

    def release(self) -> None:
        holder, self._holder = self._holder, None
        if holder is not None:
            with contextlib.suppress(LeaseUnavailable):  # else it expires by itself
                self._query(RELEASE, (self.key, holder), missing=[])

    def holder(self) -> HolderInfo | None:
        rows = self._query(HOLDER, (self.key,), missing=[])
        if not rows:
            return None
        host, pid, since = rows[0]
        return HolderInfo(
            host=host or "(unknown)",
            pid=int(pid) if pid and pid.isdigit() else 0,
            since=since or "(unknown)",
        )

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
        params = (
            self.key,
            replica_id,
            None if state is None else str(state),
            None if stop_timeout is None else repr(float(stop_timeout)),
            str(max(1, round(ttl * 1000))),
        )
        rows = self._query(REGISTER, params, creates=_TABLES)
        return bool(rows) and rows[0][0] == "t"

    def report(self, replica_id: str, state: ReplicaState) -> bool:
        return self.register(replica_id, self._ttls.get(replica_id, self.ttl), state=state)

    def replicas(self) -> list[ReplicaInfo]:
        rows = self._query(REPLICAS, (self.key,), missing=[])
        return [
            ReplicaInfo(
                replica_id=replica or "",
                state=parse_state(state),
                stop_timeout=_float(stop_timeout),
                expires_in=_float(expires_in),
                saw_handoff=saw == "t",
            )
            for replica, state, stop_timeout, expires_in, saw in rows
        ]

    def handoff_active(self) -> bool:
        rows = self._query(ACTIVE, (self.key,), missing=[["f"]])
        return bool(rows) and rows[0][0] == "t"

    def close(self) -> None:
        self._drop()

    # -- the connection

    def _query(
        self,
        sql: str,
        params: Sequence[str | None],
        *,
        creates: Sequence[str] = (),
        missing: list[list[str | None]] | None = None,
    ) -> list[list[str | None]]:
        """One statement within the timeout; `missing` is the answer when its table is absent."""
        deadline = self._clock() + self.timeout
        for attempt in (1, 2):
            fresh = self._session is None
            try:
                if self._session is None:
                    self._session = _Session.connect(self._conninfo, deadline, self._clock)
                if creates:
                    return query_creating(self._session, sql, params, creates, deadline)
                return self._session.query(sql, deadline, params)
            except _Broken as exc:
                self._drop()
                # A kept connection may have been ended by the server: one more try.
                if fresh or attempt == 2:
                    raise unavailable(self.where, str(exc), self._secrets) from None
            except _Timeout:
                self._drop()  # no lock rides on this session: a new one is cheaper
                raise unavailable(self.where, "timed out", self._secrets) from None
            except _QueryFailed as exc:
                if missing is not None and exc.sqlstate == UNDEFINED_TABLE:
                    return missing
                raise unavailable(self.where, str(exc), self._secrets) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _drop(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            session.close()


def _float(value: str | None) -> float:
    try:
        number = float(value or "")
    except ValueError:
        return 0.0
    return number if math.isfinite(number) else 0.0
