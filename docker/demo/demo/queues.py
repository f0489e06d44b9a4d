"""The job queue behind the demo: an embedded SQLite file, or Redis with RQ.

The queue's URL picks the backend, read as the entrypoint in front of it reads
it (demo.config: QUEUE_URL, else Laravel's QUEUE_CONNECTION; X_FILE for secrets):
- none: the SQLite file `demo-data/queue.sqlite3` under the working directory;
- `sqlite:///absolute/path` or `sqlite:relative/path` (read as the entrypoint reads it);
- `redis://` or `rediss://`: RQ;
- `postgresql://` (or `postgres://`): a database queue (psycopg, `FOR UPDATE SKIP LOCKED`).

DEMO_QUEUE names the queue (default `demo`): an RQ queue, or the `queue`
column of the `demo_jobs` table.

Every job counts how many times it was started (`runs`) and records which
worker (`hostname/pid`) took it, so that "exactly once" and "spread over the
replicas" can be checked from outside.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import time
import uuid
from contextlib import AbstractContextManager, closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast
from urllib.parse import urlsplit

from demo.config import QueueConfigError, queue_url

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

DEFAULT_SQLITE_PATH = "demo-data/queue.sqlite3"
MAX_COUNT = 1000
MAX_SECONDS = 3600.0
# A started SQLite job whose worker vanished (SIGKILL, OOM) is offered again
# once its own duration plus this margin has passed: at least once, never lost.
LEASE_MARGIN_S = 30.0


class Status(StrEnum):
    QUEUED = "queued"
    STARTED = "started"
    FINISHED = "finished"
    FAILED = "failed"


@dataclass(frozen=True)
class Job:
    id: str
    kind: str
    seconds: float
    status: str
    worker: str | None
    runs: int
    enqueued_at: float | None
    started_at: float | None
    finished_at: float | None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "seconds": self.seconds,
            "status": self.status,
            "worker": self.worker,
            "runs": self.runs,
            "enqueued_at": iso(self.enqueued_at),
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "error": self.error,
        }


def iso(stamp: float | None) -> str | None:
    if stamp is None:
        return None
    return datetime.fromtimestamp(stamp, UTC).isoformat(timespec="milliseconds")


def identity() -> str:
    """Who is working: `hostname/pid` (a container's hostname is its short id)."""
    return f"{socket.gethostname()}/{os.getpid()}"


class JobQueue(Protocol):
    kind: str

    def enqueue(self, count: int, seconds: float, kind: str = "sleep") -> list[Job]: ...

    def jobs(self, limit: int = 200) -> list[Job]: ...

    def counts(self) -> dict[str, int]: ...

    def ping(self) -> None: ...


def validate_job(count: int, seconds: float) -> None:
    if not 1 <= count <= MAX_COUNT:
        raise ValueError(f"count must be between 1 and {MAX_COUNT}, got {count}")
    if not 0 <= seconds <= MAX_SECONDS:
        raise ValueError(f"seconds must be between 0 and {MAX_SECONDS:g}, got {seconds:g}")


def sqlite_path(url: str) -> str:
    """`sqlite:///abs/path` or `sqlite:////abs/path` -> `/abs/path`; `sqlite:rel` -> `rel`.

    The same reading as the entrypoint's, so that both look at one file.
    """
    rest = url.split(":", 1)[1].partition("?")[0]
    if rest.startswith("//"):
        authority, slash, path = rest[2:].partition("/")
        if authority not in ("", "localhost") or not slash:
            raise QueueConfigError(
                "QUEUE_URL: write sqlite:///absolute/path or sqlite:relative/path (no host)"
            )
        rest = "/" + path.lstrip("/")
    if not rest.strip("/"):
        raise QueueConfigError("QUEUE_URL: a sqlite URL needs a file path")
    return rest


def open_queue(env: Mapping[str, str] | None = None) -> JobQueue:
    """The queue the environment names (see the module docstring)."""
    env = os.environ if env is None else env
    url = queue_url(env)
    if not url:
        return SqliteQueue(DEFAULT_SQLITE_PATH, env.get("DEMO_QUEUE", "demo"))
    scheme = urlsplit(url).scheme.lower()
    name = env.get("DEMO_QUEUE", "demo")
    if scheme == "sqlite":
        return SqliteQueue(sqlite_path(url), name)
    if scheme in ("redis", "rediss"):
        return RedisQueue(url, name)
    if scheme in ("postgresql", "postgres"):
        return PostgresQueue(url, name)
    raise QueueConfigError(
        "QUEUE_URL: the demo speaks sqlite://, redis:// and postgresql://,"
        f" not {scheme or 'this value'}://"
    )


_COLUMNS = "id, kind, seconds, status, worker, runs, enqueued_at, started_at, finished_at, error"
_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS demo_jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    seconds REAL NOT NULL,
    status TEXT NOT NULL,
    worker TEXT,
    runs INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    enqueued_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    lease_until REAL
);
CREATE INDEX IF NOT EXISTS demo_jobs_by_status ON demo_jobs (queue, status, seq);
"""
_POSTGRES_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS demo_jobs (
    seq BIGSERIAL PRIMARY KEY,
    queue TEXT NOT NULL,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    seconds DOUBLE PRECISION NOT NULL,
    status TEXT NOT NULL,
    worker TEXT,
    runs INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    enqueued_at DOUBLE PRECISION NOT NULL,
    started_at DOUBLE PRECISION,
    finished_at DOUBLE PRECISION,
    lease_until DOUBLE PRECISION
)""",
    "CREATE INDEX IF NOT EXISTS demo_jobs_by_status ON demo_jobs (queue, status, seq)",
)


def _job(row: Any) -> Job:
    return Job(*row)


class SqlQueue:
    """A queue in one table, `demo_jobs`, shared by any number of workers.

    Subclasses give the connection and how to claim one job atomically; the
    SQL is written with `?` placeholders and PostgreSQL's are put in.
    """

    kind = "sql"
    placeholder = "?"
    where = ""  # what logs may show of the location: a path, or host/database without userinfo

    def __init__(self, name: str = "demo") -> None:
        self.name = name

    def _connection(self) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def _write(self) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def _claim_row(self, conn: Any, worker: str, now: float) -> Any:
        raise NotImplementedError

    def _sql(self, text: str) -> str:
        return text.replace("?", self.placeholder)

    def enqueue(self, count: int, seconds: float, kind: str = "sleep") -> list[Job]:
        validate_job(count, seconds)
        now = time.time()
        jobs = [
            Job(uuid.uuid4().hex[:12], kind, seconds, Status.QUEUED, None, 0, now, None, None)
            for _ in range(count)
        ]
        with self._write() as conn:
            conn.cursor().executemany(
                self._sql(
                    "INSERT INTO demo_jobs (queue, id, kind, seconds, status, enqueued_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)"
                ),
                [(self.name, job.id, job.kind, job.seconds, job.status, now) for job in jobs],
            )
        return jobs

    def claim(self, worker: str) -> Job | None:
        """Take the oldest queued job (or one whose worker vanished) for `worker`."""
        with self._write() as conn:
            row = self._claim_row(conn, worker, time.time())
        return None if row is None else _job(row)

    def finish(self, job_id: str, worker: str, error: str | None = None) -> None:
        status = Status.FAILED if error else Status.FINISHED
        with self._write() as conn:
            conn.execute(
                self._sql(
                    "UPDATE demo_jobs SET status = ?, finished_at = ?, error = ?,"
                    " lease_until = NULL WHERE id = ? AND worker = ? AND status = ?"
                ),
                (status, time.time(), error, job_id, worker, Status.STARTED),
            )

    def release(self, job_id: str, worker: str) -> None:
        """Give a started job back to the queue (a worker told to stop at once)."""
        with self._write() as conn:
            conn.execute(
                self._sql(
                    "UPDATE demo_jobs SET status = ?, worker = NULL, started_at = NULL,"
                    " lease_until = NULL WHERE id = ? AND worker = ? AND status = ?"
                ),
                (Status.QUEUED, job_id, worker, Status.STARTED),
            )

    def jobs(self, limit: int = 200) -> list[Job]:
        with self._connection() as conn:
            rows = conn.execute(
                self._sql(
                    f"SELECT {_COLUMNS} FROM demo_jobs WHERE queue = ?"  # noqa: S608 - constant columns
                    " ORDER BY seq DESC LIMIT ?"
                ),
                (self.name, limit),
            ).fetchall()
        return [_job(row) for row in rows]

    def counts(self) -> dict[str, int]:
        with self._connection() as conn:
            rows = conn.execute(
                self._sql("SELECT status, COUNT(*) FROM demo_jobs WHERE queue = ? GROUP BY status"),
                (self.name,),
            ).fetchall()
        return {str(status): int(n) for status, n in rows}

    def ping(self) -> None:
        with self._connection() as conn:
            conn.execute("SELECT COUNT(*) FROM demo_jobs").fetchone()


class SqliteQueue(SqlQueue):
    """The embedded default: one SQLite file, for workers on one host.

    Claims run in a `BEGIN IMMEDIATE` transaction: SQLite lets one writer in at
    a time, so two workers never take the same job.
    """

    kind = "sqlite"

    def __init__(self, path: str, name: str = "demo") -> None:
        super().__init__(name)
        self.path = self.where = path
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with self._connection() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SQLITE_SCHEMA)

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=30, isolation_level=None)) as conn:
            yield conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _claim_row(self, conn: sqlite3.Connection, worker: str, now: float) -> Any:
        row = conn.execute(
            "SELECT seq, seconds FROM demo_jobs WHERE queue = ?"
            " AND (status = ? OR (status = ? AND lease_until < ?)) ORDER BY seq LIMIT 1",
            (self.name, Status.QUEUED, Status.STARTED, now),
        ).fetchone()
        if row is None:
            return None
        seq, seconds = row
        conn.execute(
            "UPDATE demo_jobs SET status = ?, worker = ?, runs = runs + 1, started_at = ?,"
            " finished_at = NULL, error = NULL, lease_until = ? WHERE seq = ?",
            (Status.STARTED, worker, now, now + seconds + LEASE_MARGIN_S, seq),
        )
        return conn.execute(
            f"SELECT {_COLUMNS} FROM demo_jobs WHERE seq = ?",  # noqa: S608 - constant columns
            (seq,),
        ).fetchone()


class PostgresQueue(SqlQueue):
    """A database queue in PostgreSQL, for workers on many hosts (psycopg 3).

    A claim is one `UPDATE ... WHERE seq = (SELECT ... FOR UPDATE SKIP LOCKED)`:
    concurrent workers skip the rows another one is taking, none waits, none
    takes the same job.
    """

    kind = "postgresql"
    placeholder = "%s"

    def __init__(self, url: str, name: str = "demo") -> None:
        super().__init__(name)
        self.url = url
        parts = urlsplit(url)
        self.where = f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path}"
        with self._write() as conn:
            # Replicas starting together would race on CREATE TABLE IF NOT EXISTS.
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('demo_jobs'))")
            for statement in _POSTGRES_SCHEMA:
                conn.execute(statement)

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        import psycopg

        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
            yield conn

    @contextmanager
    def _write(self) -> Iterator[Any]:
        with self._connection() as conn, conn.transaction():
            yield conn

    def _claim_row(self, conn: Any, worker: str, now: float) -> Any:
        return conn.execute(
            f"UPDATE demo_jobs SET status = %s, worker = %s, runs = runs + 1, started_at = %s,"  # noqa: S608 - constant columns
            " finished_at = NULL, error = NULL, lease_until = %s + seconds + %s"
            " WHERE seq = (SELECT seq FROM demo_jobs WHERE queue = %s"
            " AND (status = %s OR (status = %s AND lease_until < %s))"
            " ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED)"
            f" RETURNING {_COLUMNS}",
            (
                Status.STARTED, worker, now, now, LEASE_MARGIN_S,
                self.name, Status.QUEUED, Status.STARTED, now,
            ),
        ).fetchone()  # fmt: skip


def jobs_key(queue: str) -> str:
    """The ids of the queue's jobs, newest first (what the web page lists)."""
    return f"demo:{queue}:jobs"


def runs_key(queue: str) -> str:
    """Job id -> how many times a worker started it."""
    return f"demo:{queue}:runs"


KEEP_JOBS = 1000
RESULT_TTL_S = 86400


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def _stamp(value: datetime | None) -> float | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


class RedisQueue:
    """RQ on Redis: the web app enqueues `demo.jobs.rq_run`, `rq` workers run it."""

    kind = "redis"

    def __init__(self, url: str, name: str = "demo") -> None:
        from redis import Redis
        from rq import Queue

        self.redis = Redis.from_url(url, socket_connect_timeout=5, health_check_interval=30)
        self.queue = Queue(name, connection=self.redis)
        self.jobs_key = jobs_key(name)
        self.runs_key = runs_key(name)

    def enqueue(self, count: int, seconds: float, kind: str = "sleep") -> list[Job]:
        from rq import Retry

        validate_job(count, seconds)
        jobs = []
        for _ in range(count):
            rq_job = self.queue.enqueue(
                "demo.jobs.rq_run",
                seconds,
                job_timeout=int(seconds * 2) + 60,
                result_ttl=RESULT_TTL_S,
                failure_ttl=RESULT_TTL_S,
                # A job abandoned by a killed worker is retried, not dropped.
                retry=Retry(max=2),
                meta={"kind": kind, "seconds": seconds},
            )
            jobs.append(self._job(rq_job, 0))
        with self.redis.pipeline() as pipe:
            pipe.lpush(self.jobs_key, *[job.id for job in jobs])
            pipe.ltrim(self.jobs_key, 0, KEEP_JOBS - 1)
            pipe.execute()
        return jobs

    @staticmethod
    def _job(rq_job: Any, runs: int) -> Job:
        meta = rq_job.meta or {}
        status = rq_job.get_status(refresh=False)
        error = None
        if status == "failed":
            result = rq_job.latest_result()
            error = (result.exc_string or "").strip().splitlines()[-1:] if result else None
        return Job(
            id=rq_job.id,
            kind=str(meta.get("kind", "sleep")),
            seconds=float(meta.get("seconds", 0.0)),
            status=str(getattr(status, "value", status) or Status.QUEUED),
            worker=rq_job.worker_name,
            runs=runs,
            enqueued_at=_stamp(rq_job.enqueued_at),
            started_at=_stamp(rq_job.started_at),
            finished_at=_stamp(rq_job.ended_at),
            error=error[0] if error else None,
        )

    def jobs(self, limit: int = 200) -> list[Job]:
        from rq.job import Job as RQJob

        # A synchronous client: redis-py's types also allow its asyncio results.
        listed = cast("list[bytes]", self.redis.lrange(self.jobs_key, 0, limit - 1))
        ids = [_text(raw) for raw in listed]
        if not ids:
            return []
        runs = cast("list[bytes | None]", self.redis.hmget(self.runs_key, ids))
        found = RQJob.fetch_many(ids, connection=self.redis)
        return [
            self._job(rq_job, int(n or 0))
            for rq_job, n in zip(found, runs, strict=True)
            if rq_job is not None
        ]

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for job in self.jobs(KEEP_JOBS):
            counts[job.status] = counts.get(job.status, 0) + 1
        return counts

    def ping(self) -> None:
        self.redis.ping()
