"""Queue depth: counted in the queue's own store, the way each framework lays it out.

`read_depths` is the blocking read (for `status`, or inside a thread): one
connection to the store, a few counting commands per queue, every step
bounded by one deadline. `QueueDepths` puts it behind the supervisor's Loop:
a read runs in a short-lived thread when a scrape (or `status`) asks and the
last read is older than `max_age`; the asker is answered when the read
finishes or at its timeout, whichever comes first. Nothing runs between asks.

Ready means "would run now if a worker were free": the waiting list(s) plus
delayed jobs whose time has come (a framework moves those to its list only
when a worker or scheduler runs, so with no worker they would be invisible,
which is exactly when an autoscaler needs to see them). Delayed is the rest
of the delayed jobs, reserved the jobs a worker holds. None where the
framework keeps no such count per queue.

Key layouts (checked against each library's source):

- Laravel RedisQueue: `queues:NAME` (list, RPUSH by LuaScripts::push),
  `queues:NAME:delayed` (zset scored by available-at, seconds),
  `queues:NAME:reserved` (zset); `queues:NAME:notify` is a wake-up token
  list, not jobs. Every key carries the connection's prefix.
- Laravel database driver: table `jobs` (DB_QUEUE_TABLE): ready is
  `reserved_at IS NULL AND available_at <= now`, delayed `reserved_at IS NULL
  AND available_at > now`, reserved `reserved_at IS NOT NULL`, as
  DatabaseQueue::pendingSize / delayedSize / reservedSize count them.
- RQ: `rq:queue:NAME` (list of job ids), `rq:scheduled:NAME` (zset scored
  by the enqueue time, seconds), `rq:wip:NAME` (StartedJobRegistry, zset).
- Celery on Redis (kombu): the list named after the queue, and one list per
  priority step, `NAME\\x06\\x16N` for N in the steps above 0 (default 3, 6,
  9; any of 1..9 is possible with `priority_steps`), all read. ETA/countdown
  tasks wait inside workers (kombu's global `unacked` hash), so no delayed
  or reserved count per queue.
- Sidekiq: `queue:NAME` (list). `schedule` and `retry` are zsets shared by
  every queue (the queue is inside each job's JSON): no per-queue count.
- BullMQ: `bull:NAME:wait` and `bull:NAME:paused` (lists; v5 moved jobs to
  `paused` while the queue is paused), `bull:NAME:prioritized` (zset, v4+),
  `bull:NAME:delayed` (zset scored by timestamp_ms * 0x1000 + a counter),
  `bull:NAME:active` (list). A v4 "0:..." marker at the tail of `wait` is
  not a job.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from entrypoint.errors import ConfigError
from entrypoint.plan.depth import REDIS_SCHEMES, DepthSpec, store_problem
from entrypoint.plan.redact import redact_text
from entrypoint.plan.urls import Scheme, driver_available
from entrypoint.probes._net import Attempt, tls_context, verify_tls
from entrypoint.probes.resp import RedisConnection, RedisReplyError

if TYPE_CHECKING:
    from entrypoint.plan.urls import Dependency
    from entrypoint.runtime.loop import Loop, Timer

CELERY_SEPARATOR = "\x06\x16"  # kombu.transport.redis.Channel.sep
# The longest message kept from a failed read.
_MAX_ERROR = 200
# The Loop answers a waiting asker this long after the read's own deadline,
# leaving the read the chance to say which step timed out.
_TIMEOUT_MARGIN = 0.2


@dataclass(frozen=True)
class QueueDepth:
    """One queue's counts at one read. `up` False: the store did not answer (see `error`)."""

    label: str
    up: bool
    ready: int | None = None
    delayed: int | None = None
    reserved: int | None = None
    error: str | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "ready": self.ready,
            "delayed": self.delayed,
            "reserved": self.reserved,
            "up": self.up,
            "error": self.error,
        }


Reader = Callable[..., tuple[QueueDepth, ...]]


def check_store(store: Dependency | None, specs: Sequence[DepthSpec]) -> str | None:
    """Why `specs` cannot be read from `store`, or None: for a 78 at start."""
    if not specs:
        return None
    if store is None:
        return "ENTRYPOINT_QUEUE_DEPTH: there is no queue store to read (set QUEUE_URL)"
    problem = store_problem(tuple(specs), str(store.scheme))
    if problem is not None:
        return problem
    driver = {Scheme.POSTGRESQL: "psycopg", Scheme.MYSQL: "pymysql"}.get(store.scheme)
    if driver is not None and not driver_available(driver):
        extra = "postgres" if store.scheme is Scheme.POSTGRESQL else "mysql"
        return (
            f"ENTRYPOINT_QUEUE_DEPTH: reading a {store.scheme} queue needs {driver}: "
            f"pip install 'entrypoint[{extra}]'"
        )
    return None


def read_depths(
    store: Dependency,
    specs: Sequence[DepthSpec],
    *,
    timeout: float,
    now: float | None = None,
) -> tuple[QueueDepth, ...]:
    """Count every queue of `specs` in `store` within `timeout` seconds. Never raises for the
    store's sake: a queue that could not be read has `up` False and a one-line `error`.

    `now` (wall clock, seconds) splits delayed jobs into due and not yet due.
    """
    wall = time.time() if now is None else now
    try:
        if store.scheme in (Scheme.REDIS, Scheme.REDISS):
            return _read_redis(store, specs, timeout, wall)
        if store.scheme is Scheme.SQLITE:
            return _read_sqlite(store, specs, timeout, wall)
        if store.scheme is Scheme.POSTGRESQL:
            return _read_postgres(store, specs, timeout, wall)
        if store.scheme is Scheme.MYSQL:
            return _read_mysql(store, specs, timeout, wall)
        problem = store_problem(tuple(specs), str(store.scheme)) or "not supported"
        return _all_down(specs, problem)
    except TimeoutError:
        return _all_down(specs, f"timed out after {timeout:g} s")
    except Exception as exc:  # noqa: BLE001 - any failure of the store is "down", never a crash
        return _all_down(specs, _describe(exc, store))


def _all_down(specs: Sequence[DepthSpec], error: str) -> tuple[QueueDepth, ...]:
    return tuple(QueueDepth(spec.label, up=False, error=error) for spec in specs)


def _describe(exc: BaseException, store: Dependency) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = redact_text(text, store.secrets)
    return text if len(text) <= _MAX_ERROR else text[:_MAX_ERROR] + "..."


# --- Redis --------------------------------------------------------------------


def _read_redis(
    store: Dependency, specs: Sequence[DepthSpec], timeout: float, now: float
) -> tuple[QueueDepth, ...]:
    assert store.port is not None
    tls = tls_context(verify_tls(store.options)) if store.scheme is Scheme.REDISS else None
    with Attempt(timeout) as attempt:
        sock = attempt.connect(store.host, store.port, tls=tls)
        # Over the attempt's socket: its deadline shuts it, which ends any read.
        connection = RedisConnection.from_socket(sock)
        try:
            if store.password is not None:
                auth = (store.username, store.password) if store.username else (store.password,)
                connection.settimeout(attempt.left())
                connection.command("AUTH", *auth)
            if store.database is not None:
                connection.settimeout(attempt.left())
                connection.command("SELECT", store.database)
            results = []
            for spec in specs:
                counter = _Counter(connection, attempt)
                try:
                    results.append(_count(counter, spec, now))
                except RedisReplyError as exc:
                    results.append(QueueDepth(spec.label, up=False, error=_describe(exc, store)))
            return tuple(results)
        finally:
            connection.close()


class _Counter:
    """Counting commands on one connection, each bounded by the attempt's deadline."""

    def __init__(self, connection: RedisConnection, attempt: Attempt) -> None:
        self._connection = connection
        self._attempt = attempt

    def _int(self, *args: str | int) -> int:
        self._attempt.step = f"reading {args[1]!r}"
        self._connection.settimeout(self._attempt.left())
        reply = self._connection.command(*args)
        if not isinstance(reply, int):
            raise RedisReplyError(f"ERR {args[0]} answered {reply!r}")
        return reply

    def llen(self, key: str) -> int:
        return self._int("LLEN", key)

    def zcard(self, key: str) -> int:
        return self._int("ZCARD", key)

    def zcount(self, key: str, low: str, high: str) -> int:
        return self._int("ZCOUNT", key, low, high)

    def list_jobs(self, key: str) -> int:
        """LLEN, less a BullMQ v4 marker ("0:...") at the tail, which is no job."""
        length = self.llen(key)
        if length:
            self._connection.settimeout(self._attempt.left())
            tail = self._connection.command("LINDEX", key, -1)
            if isinstance(tail, bytes) and tail.startswith(b"0:"):
                length -= 1
        return length


def _count(counter: _Counter, spec: DepthSpec, now: float) -> QueueDepth:
    queue = spec.queue
    ready = delayed = reserved = 0
    seconds = str(math.floor(now))
    if spec.framework == "laravel":
        for prefix in spec.prefixes:
            key = f"{prefix}queues:{queue}"
            ready += counter.llen(key)
            ready += counter.zcount(f"{key}:delayed", "-inf", seconds)
            delayed += counter.zcount(f"{key}:delayed", f"({seconds}", "+inf")
            reserved += counter.zcard(f"{key}:reserved")
        return QueueDepth(spec.label, up=True, ready=ready, delayed=delayed, reserved=reserved)
    if spec.framework == "rq":
        for prefix in spec.prefixes:
            ready += counter.llen(f"{prefix}:queue:{queue}")
            scheduled = f"{prefix}:scheduled:{queue}"
            ready += counter.zcount(scheduled, "-inf", seconds)
            delayed += counter.zcount(scheduled, f"({seconds}", "+inf")
            reserved += counter.zcard(f"{prefix}:wip:{queue}")
        return QueueDepth(spec.label, up=True, ready=ready, delayed=delayed, reserved=reserved)
    if spec.framework == "celery":
        for prefix in spec.prefixes:
            ready += counter.llen(f"{prefix}{queue}")
            for step in range(1, 10):
                ready += counter.llen(f"{prefix}{queue}{CELERY_SEPARATOR}{step}")
        return QueueDepth(spec.label, up=True, ready=ready)
    if spec.framework == "sidekiq":
        for prefix in spec.prefixes:
            ready += counter.llen(f"{prefix}queue:{queue}")
        return QueueDepth(spec.label, up=True, ready=ready)
    # BullMQ: a delayed job is due once its timestamp (ms, the score's high bits) has passed.
    due = str(math.floor(now * 1000) * 0x1000 + 0xFFF)
    for prefix in spec.prefixes:
        key = f"{prefix}:{queue}"
        ready += counter.list_jobs(f"{key}:wait") + counter.list_jobs(f"{key}:paused")
        ready += counter.zcard(f"{key}:prioritized")
        ready += counter.zcount(f"{key}:delayed", "-inf", due)
        delayed += counter.zcount(f"{key}:delayed", f"({due}", "+inf")
        reserved += counter.llen(f"{key}:active")
    return QueueDepth(spec.label, up=True, ready=ready, delayed=delayed, reserved=reserved)


# --- Laravel's database driver ------------------------------------------------

# The table name is checked to be an identifier (schema.table at most) by plan.depth.
_COUNT_SQL = (
    "SELECT"
    " COALESCE(SUM(CASE WHEN reserved_at IS NULL AND available_at <= {p} THEN 1 ELSE 0 END), 0),"
    " COALESCE(SUM(CASE WHEN reserved_at IS NULL AND available_at > {p} THEN 1 ELSE 0 END), 0),"
    " COALESCE(SUM(CASE WHEN reserved_at IS NOT NULL THEN 1 ELSE 0 END), 0)"
    " FROM {table} WHERE queue = {p}"
)


def _quoted(table: str, quote: str) -> str:
    return ".".join(f"{quote}{part}{quote}" for part in table.split("."))


def _database_depth(spec: DepthSpec, row: Sequence[object] | None) -> QueueDepth:
    if spec.framework != "laravel":
        return QueueDepth(spec.label, up=False, error="only laravel: queues live in a database")
    values = [int(v) if isinstance(v, int | float | str) else int(str(v)) for v in row or (0, 0, 0)]
    return QueueDepth(spec.label, up=True, ready=values[0], delayed=values[1], reserved=values[2])


def _read_sqlite(
    store: Dependency, specs: Sequence[DepthSpec], timeout: float, now: float
) -> tuple[QueueDepth, ...]:
    import sqlite3

    path = store.database or ""
    if not os.path.exists(path):
        return _all_down(specs, f"no such file: {path}")
    uri = f"file:{urllib.parse.quote(path)}?mode=ro"
    seconds = math.floor(now)
    results = []
    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=timeout)) as connection:
        for spec in specs:
            if spec.framework != "laravel":
                results.append(_database_depth(spec, None))
                continue
            sql = _COUNT_SQL.format(p="?", table=_quoted(spec.table, '"'))
            try:
                row = connection.execute(sql, (seconds, seconds, spec.queue)).fetchone()
            except sqlite3.Error as exc:
                results.append(QueueDepth(spec.label, up=False, error=_describe(exc, store)))
                continue
            results.append(_database_depth(spec, row))
    return tuple(results)


def _read_postgres(
    store: Dependency, specs: Sequence[DepthSpec], timeout: float, now: float
) -> tuple[QueueDepth, ...]:
    import psycopg

    user = store.username or "postgres"
    seconds = math.floor(now)
    results = []
    # libpq's connect timeout is whole seconds, at least 2; the statement
    # timeout bounds each count.
    with psycopg.connect(
        host=store.host,
        port=store.port,
        user=user,
        password=store.password or "",
        dbname=store.database or user,
        connect_timeout=max(2, math.ceil(timeout)),
        sslmode=store.option("sslmode") or "prefer",
        application_name="entrypoint-queue-depth",
        autocommit=True,
        options=f"-c statement_timeout={max(1, int(timeout * 1000))}",
    ) as connection:
        for spec in specs:
            if spec.framework != "laravel":
                results.append(_database_depth(spec, None))
                continue
            sql = _COUNT_SQL.format(p="%s", table=_quoted(spec.table, '"'))
            try:
                row = connection.execute(sql, (seconds, seconds, spec.queue)).fetchone()
            except psycopg.Error as exc:
                results.append(QueueDepth(spec.label, up=False, error=_describe(exc, store)))
                continue
            results.append(_database_depth(spec, row))
    return tuple(results)


def _read_mysql(
    store: Dependency, specs: Sequence[DepthSpec], timeout: float, now: float
) -> tuple[QueueDepth, ...]:
    import pymysql

    seconds = math.floor(now)
    results = []
    with Attempt(timeout) as attempt:
        left = attempt.left()
        connection = pymysql.connections.Connection(
            host=store.host,
            port=store.port,
            user=store.username or "",
            password=store.password or "",
            database=store.database,
            connect_timeout=left,
            read_timeout=left,
            write_timeout=left,
            program_name="entrypoint-queue-depth",
            defer_connect=True,
        )
        assert store.port is not None
        connection.connect(attempt.connect(store.host, store.port))
        try:
            for spec in specs:
                if spec.framework != "laravel":
                    results.append(_database_depth(spec, None))
                    continue
                sql = _COUNT_SQL.format(p="%s", table=_quoted(spec.table, "`"))
                attempt.step = f"counting {spec.label}"
                try:
                    with connection.cursor() as cursor:
                        cursor.execute(sql, (seconds, seconds, spec.queue))
                        row = cursor.fetchone()
                except pymysql.err.MySQLError as exc:
                    if not connection.open:
                        raise
                    results.append(QueueDepth(spec.label, up=False, error=_describe(exc, store)))
                    continue
                results.append(_database_depth(spec, row))
        finally:
            if connection.open:
                connection.close()
    return tuple(results)


# --- on the Loop ----------------------------------------------------------------


class _Read:
    """One read in its thread; `result` is set before the byte on the pipe says so."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.result: tuple[QueueDepth, ...] | None = None
        self.timed_out = False
        self.readable, self.writable = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.timer: Timer | None = None


class QueueDepths:
    """Queue depths for the supervisor: read lazily, at most once per `max_age`, never on
    the Loop's thread.

    `request(callback)` calls `callback(depths)` on the Loop's thread: at once
    when the last read started less than `max_age` ago and is over (or timed
    out), else when the read it starts (or the one in flight) finishes, or
    `timeout` (+0.2 s) after that read started, whichever comes first; a read
    that timed out answers with every queue down. At most one read (one
    thread, one pipe) exists at a time; none between requests.
    """

    def __init__(
        self,
        loop: Loop,
        store: Dependency,
        specs: Sequence[DepthSpec],
        *,
        timeout: float = 2.0,
        max_age: float = 1.0,
        read: Reader = read_depths,
        wall: Callable[[], float] = time.time,
    ) -> None:
        problem = check_store(store, specs)
        if problem is not None:
            raise ConfigError(problem)
        self._loop = loop
        self._store = store
        self._specs = tuple(specs)
        self._timeout = timeout
        self._max_age = max_age
        self._read_fn = read
        self._wall = wall
        self._latest: tuple[QueueDepth, ...] | None = None
        self._last_started: float | None = None
        self._inflight: _Read | None = None
        self._waiting: list[Callable[[tuple[QueueDepth, ...]], None]] = []
        self.reads = 0  # reads started so far

    @property
    def specs(self) -> tuple[DepthSpec, ...]:
        return self._specs

    @property
    def latest(self) -> tuple[QueueDepth, ...] | None:
        """The depths of the last read that ended (or timed out), if any."""
        return self._latest

    def request(self, callback: Callable[[tuple[QueueDepth, ...]], None]) -> None:
        now = self._loop.clock()
        inflight = self._inflight
        if inflight is not None:
            if inflight.timed_out and self._latest is not None:
                callback(self._latest)
            else:
                self._waiting.append(callback)
            return
        fresh = self._last_started is not None and now - self._last_started < self._max_age
        if fresh and self._latest is not None:
            callback(self._latest)
            return
        self._waiting.append(callback)
        self._start(now)

    def _start(self, now: float) -> None:
        read = _Read(now)
        self._inflight = read
        self._last_started = now
        self.reads += 1
        self._loop.add_reader(read.readable, self._finished)
        read.timer = self._loop.call_later(self._timeout + _TIMEOUT_MARGIN, self._expired)
        thread = threading.Thread(target=self._run, args=(read,), name="queue-depth", daemon=True)
        thread.start()

    def _run(self, read: _Read) -> None:
        try:
            read.result = self._read_fn(
                self._store, self._specs, timeout=self._timeout, now=self._wall()
            )
        except Exception as exc:  # noqa: BLE001 - a reader bug must still end the read
            read.result = _all_down(self._specs, _describe(exc, self._store))
        finally:
            # The thread owns the write end: closing it here means no later
            # write can hit a reused fd number.
            with contextlib.suppress(OSError):
                os.write(read.writable, b"\0")
            os.close(read.writable)

    def _finished(self) -> None:
        read = self._inflight
        assert read is not None
        self._discard(read)
        self._latest = read.result if read.result is not None else self._latest
        self._answer()

    def _expired(self) -> None:
        read = self._inflight
        if read is None:
            return
        read.timed_out = True
        self._latest = _all_down(self._specs, f"timed out after {self._timeout:g} s")
        self._answer()

    def _discard(self, read: _Read) -> None:
        self._inflight = None
        if read.timer is not None:
            read.timer.cancel()
        self._loop.remove_reader(read.readable)
        os.close(read.readable)

    def _answer(self) -> None:
        waiting, self._waiting = self._waiting, []
        latest = self._latest
        assert latest is not None
        for callback in waiting:
            callback(latest)

    def close(self) -> None:
        """Stop listening for a read in flight (its thread ends by itself); drop waiters."""
        if self._inflight is not None:
            self._discard(self._inflight)
        self._waiting = []


def depth_json(depths: Sequence[QueueDepth]) -> dict[str, int | None]:
    """For `status --json`'s `queue_depth`: label -> jobs ready now (None when unread)."""
    return {depth.label: depth.ready if depth.up else None for depth in depths}


__all__ = [
    "REDIS_SCHEMES",
    "QueueDepth",
    "QueueDepths",
    "check_store",
    "depth_json",
    "read_depths",
]
