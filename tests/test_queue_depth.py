"""Queue depth read from real stores, after real enqueues by the real libraries.

RQ and Celery enqueue from PyPI, BullMQ from npm (tests/node), against the
Redis on 6379; Laravel's and Sidekiq's Redis layouts are written here command
for command as those libraries write them (their source quoted); Laravel's
database driver is counted in SQLite, PostgreSQL and MariaDB tables made
for the test. Every key and table name is unique to its test, and removed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from entrypoint.errors import ConfigError
from entrypoint.plan.depth import parse_queue_depth
from entrypoint.plan.urls import parse_url
from entrypoint.runtime.depth import (
    CELERY_SEPARATOR,
    QueueDepth,
    QueueDepths,
    check_store,
    depth_json,
    read_depths,
)
from entrypoint.runtime.loop import Loop
from tests.helpers import ROOT, base_env, sleep_until
from tests.loop_thread import LoopThread, fds_left, open_fds
from tests.servers import missing, require_server

NODE_DIR = ROOT / "tests" / "node"
REDIS_URL = "redis://127.0.0.1:6379/0"


def unique(stem: str) -> str:
    return f"{stem}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    require_server("redis")
    connection = redis.Redis.from_url(REDIS_URL)
    yield connection
    connection.close()


@pytest.fixture
def cleanup(client: redis.Redis) -> Iterator[list[str]]:
    """Keys to delete after the test (only ones the test made)."""
    keys: list[str] = []
    yield keys
    if keys:
        client.delete(*keys)


def depth_of(entry: str, url: str = REDIS_URL, env: dict[str, str] | None = None) -> QueueDepth:
    specs = parse_queue_depth(entry, env or {})
    (depth,) = read_depths(parse_url(url, "QUEUE_URL"), specs, timeout=5)
    assert depth.up, depth.error
    return depth


def counts(depth: QueueDepth) -> tuple[int | None, int | None, int | None]:
    return depth.ready, depth.delayed, depth.reserved


# --- RQ ------------------------------------------------------------------------


def test_rq_ready_scheduled_and_started(
    client: redis.Redis, cleanup: list[str], tmp_path: Path
) -> None:
    from rq import Queue

    name = unique("depth-rq")
    queue = Queue(name, connection=client)
    kinds = ("queue", "scheduled", "wip", "workers", "failed", "finished", "deferred", "canceled")
    cleanup += [f"rq:{kind}:{name}" for kind in kinds]
    cleanup += [f"rq:queue:{name}:intermediate", f"rq:ready:{name}"]
    jobs = [queue.enqueue("tests.rq_jobs.slow", str(tmp_path / "held"), 60)]
    jobs += [queue.enqueue("tests.rq_jobs.slow", str(tmp_path / f"j{i}"), 0) for i in range(3)]
    jobs.append(queue.enqueue_in(timedelta(minutes=10), "tests.rq_jobs.slow", "x", 0))
    # Due, but no scheduler runs to move it to the list: ready all the same.
    jobs.append(queue.enqueue_at(datetime.now(UTC) - timedelta(seconds=30), "tests.rq_jobs.slow"))
    cleanup += [job.key.decode() if isinstance(job.key, bytes) else job.key for job in jobs]
    assert counts(depth_of(f"rq:{name}")) == (4 + 1, 1, 0)

    # A real worker takes the first job and holds it (60 s): reserved 1.
    worker = subprocess.Popen(
        [shutil.which("rq") or "rq", "worker", "--burst", "--url", REDIS_URL, name],
        env=base_env(),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        sleep_until((tmp_path / "held.started").exists, 30)
        assert counts(depth_of(f"rq:{name}")) == (3 + 1, 1, 1)
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)


def test_rq_key_prefix_from_the_environment(client: redis.Redis, cleanup: list[str]) -> None:
    name = unique("depth-rqp")
    # rq/defaults.py: RQ_KEY_PREFIX = os.environ.get('RQ_KEY_PREFIX', 'rq'), and the
    # queue key is RQ_KEY_PREFIX + ':queue:' + name.
    cleanup.append(f"myrq:queue:{name}")
    client.rpush(f"myrq:queue:{name}", "job-1", "job-2")
    assert depth_of(f"rq:{name}", env={"RQ_KEY_PREFIX": "myrq"}).ready == 2
    assert depth_of(f"rq:{name}?prefix=myrq").ready == 2
    assert depth_of(f"rq:{name}").ready == 0


# --- Celery ----------------------------------------------------------------------


def test_celery_lists_and_priority_steps(client: redis.Redis, cleanup: list[str]) -> None:
    from celery import Celery

    name = unique("depth-celery")
    cleanup += [name, *(f"{name}{CELERY_SEPARATOR}{n}" for n in range(1, 10))]
    cleanup += [f"_kombu.binding.{name}", f"_kombu.binding_permanent.{name}"]
    app = Celery("depth", broker=REDIS_URL)
    app.conf.broker_connection_retry_on_startup = True
    try:
        app.send_task("tasks.add", args=(1, 2), queue=name)
        app.send_task("tasks.add", args=(3, 4), queue=name)
        # kombu: priority 5 goes to the step below it, 3: the list NAME\x06\x163.
        app.send_task("tasks.add", args=(5, 6), queue=name, priority=5)
        # An ETA task sits in the list until a worker takes (and holds) it.
        app.send_task("tasks.add", args=(7, 8), queue=name, countdown=600)
    finally:
        app.close()
    assert client.llen(f"{name}{CELERY_SEPARATOR}3") == 1, "the priority step list is used"
    assert counts(depth_of(f"celery:{name}")) == (4, None, None)


# --- BullMQ ----------------------------------------------------------------------


def node_ready() -> None:
    if shutil.which("node") is None:
        missing("node is not installed (apt-get install nodejs)")
    if not (NODE_DIR / "node_modules" / "bullmq").is_dir():
        missing("BullMQ is not installed: npm ci --prefix tests/node")


@pytest.mark.parametrize("prefix", ["bull", "{app}"])
def test_bullmq_as_bullmq_counts_it(client: redis.Redis, prefix: str) -> None:
    node_ready()
    name = unique("depth-bullmq")
    script = [shutil.which("node") or "node", str(NODE_DIR / "bullmq_jobs.mjs")]
    with subprocess.Popen(
        [*script, "6379", "0", prefix, name],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as node:
        assert node.stdout is not None
        assert node.stdin is not None
        line = node.stdout.readline()
        try:
            own = json.loads(line)
            assert own == {"active": 1, "wait": 2, "prioritized": 1, "delayed": 1, "paused": 0}
            entry = f"bullmq:{name}" if prefix == "bull" else f"bullmq:{name}?prefix={prefix}"
            depth = depth_of(entry)
            assert counts(depth) == (own["wait"] + own["prioritized"], own["delayed"], 1)
        finally:
            node.stdin.close()
            assert node.wait(30) == 0
    assert client.keys(f"{prefix}:{name}:*") == []


def test_bullmq_due_delayed_jobs_are_ready(client: redis.Redis, cleanup: list[str]) -> None:
    name = unique("depth-bullmqd")
    key = f"bull:{name}:delayed"
    cleanup.append(key)
    # getDelayedScore.lua: score = delayedTimestamp * 0x1000 (+ a counter below 0x1000).
    now_ms = int(time.time() * 1000)
    client.zadd(key, {"1": (now_ms - 5000) * 0x1000 + 7, "2": (now_ms + 600_000) * 0x1000})
    assert counts(depth_of(f"bullmq:{name}")) == (1, 1, 0)


# --- Laravel on Redis --------------------------------------------------------------


def write_laravel_queue(client: redis.Redis, key: str) -> None:
    """What Illuminate\\Queue\\RedisQueue does for 2 pushes, 2 delayed, 1 reserved job."""
    now = int(time.time())
    for n in range(2):
        payload = json.dumps({"id": uuid.uuid4().hex, "attempts": 0, "n": n})
        # LuaScripts::push(): redis.call('rpush', KEYS[1], ARGV[1])
        #                     redis.call('rpush', KEYS[2], 1)      -- KEYS[2] = queue.':notify'
        client.rpush(key, payload)
        client.rpush(f"{key}:notify", 1)
    # LuaScripts::later(): redis.call('zadd', KEYS[1], ARGV[1], ARGV[2]) with
    # KEYS[1] = queue.':delayed' and ARGV[1] = $this->availableAt($delay).
    client.zadd(f"{key}:delayed", {json.dumps({"id": "later"}): now + 600})
    client.zadd(f"{key}:delayed", {json.dumps({"id": "due"}): now - 5})
    # LuaScripts::pop(): redis.call('zadd', KEYS[2], ARGV[1], reserved) with
    # KEYS[2] = queue.':reserved' and ARGV[1] = the reservation's expiry.
    client.zadd(f"{key}:reserved", {json.dumps({"id": "taken", "attempts": 1}): now + 90})


def laravel_keys(key: str) -> list[str]:
    return [key, f"{key}:notify", f"{key}:delayed", f"{key}:reserved"]


@pytest.mark.parametrize(
    ("prefix", "env", "entry_suffix"),
    [
        # Laravel's skeleton since 2025: Str::slug(env('APP_NAME', 'laravel')).'-database-'
        ("laravel-database-", {}, ""),
        # before: Str::slug(env('APP_NAME', 'laravel'), '_').'_database_'
        ("laravel_database_", {}, ""),
        ("my-shop-database-", {"APP_NAME": "My Shop"}, ""),
        ("", {"REDIS_PREFIX": ""}, ""),
        ("cache:", {"REDIS_PREFIX": "cache:"}, ""),
        ("custom_", {}, "?prefix=custom_"),
    ],
)
def test_laravel_redis_layout(
    client: redis.Redis,
    cleanup: list[str],
    prefix: str,
    env: dict[str, str],
    entry_suffix: str,
) -> None:
    name = unique("depth-laravel")
    key = f"{prefix}queues:{name}"  # RedisQueue::getQueue(): 'queues:'.$queue, plus the prefix
    cleanup += laravel_keys(key)
    write_laravel_queue(client, key)
    # 2 pushed + 1 delayed whose time has come; 1 delayed later; 1 reserved.
    assert counts(depth_of(f"laravel:{name}{entry_suffix}", env=env)) == (3, 1, 1)


def test_laravel_explicit_prefix_reads_nothing_else(
    client: redis.Redis, cleanup: list[str]
) -> None:
    name = unique("depth-laravelx")
    key = f"laravel-database-queues:{name}"
    cleanup += laravel_keys(key)
    write_laravel_queue(client, key)
    assert counts(depth_of(f"laravel:{name}", env={"REDIS_PREFIX": "other_"})) == (0, 0, 0)


# --- Sidekiq -------------------------------------------------------------------------


def test_sidekiq_layout(client: redis.Redis, cleanup: list[str]) -> None:
    name = unique("depth-sidekiq")
    cleanup += [f"queue:{name}"]
    now = time.time()
    for n in range(3):
        job = {"class": "HardJob", "args": [n], "queue": name, "jid": uuid.uuid4().hex}
        # Sidekiq::Client#atomic_push: conn.sadd("queues", grouped_queues.keys)
        #                              conn.lpush("queue:#{queue}", to_push)
        client.sadd("queues", name)
        client.lpush(f"queue:{name}", json.dumps(job, separators=(",", ":")))
    # Scheduled: conn.zadd("schedule", [at, Sidekiq.dump_json(hash)]), shared by all queues.
    scheduled = json.dumps({"class": "HardJob", "queue": name, "jid": uuid.uuid4().hex})
    client.zadd("schedule", {scheduled: now + 600})
    try:
        assert counts(depth_of(f"sidekiq:{name}")) == (3, None, None)
    finally:
        client.zrem("schedule", scheduled)
        client.srem("queues", name)


def test_a_namespace_prefix_for_sidekiq(client: redis.Redis, cleanup: list[str]) -> None:
    name = unique("depth-sidekiqns")
    cleanup.append(f"myapp:queue:{name}")
    client.lpush(f"myapp:queue:{name}", "{}")
    assert depth_of(f"sidekiq:{name}?prefix=myapp:").ready == 1


# --- Laravel's database driver ----------------------------------------------------

# database/migrations/0001_01_01_000002_create_jobs_table.php:
#   $table->id(); $table->string('queue')->index(); $table->longText('payload');
#   $table->unsignedTinyInteger('attempts'); $table->unsignedInteger('reserved_at')->nullable();
#   $table->unsignedInteger('available_at'); $table->unsignedInteger('created_at');
JOBS_TABLE = {
    "sqlite": (
        "CREATE TABLE {t} (id INTEGER PRIMARY KEY AUTOINCREMENT, queue VARCHAR(255) NOT NULL,"
        " payload TEXT NOT NULL, attempts INTEGER NOT NULL, reserved_at INTEGER NULL,"
        " available_at INTEGER NOT NULL, created_at INTEGER NOT NULL)"
    ),
    "postgresql": (
        "CREATE TABLE {t} (id BIGSERIAL PRIMARY KEY, queue VARCHAR(255) NOT NULL,"
        " payload TEXT NOT NULL, attempts SMALLINT NOT NULL, reserved_at INTEGER NULL,"
        " available_at INTEGER NOT NULL, created_at INTEGER NOT NULL)"
    ),
    "mysql": (
        "CREATE TABLE {t} (id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY,"
        " queue VARCHAR(255) NOT NULL, payload LONGTEXT NOT NULL,"
        " attempts TINYINT UNSIGNED NOT NULL, reserved_at INT UNSIGNED NULL,"
        " available_at INT UNSIGNED NOT NULL, created_at INT UNSIGNED NOT NULL)"
    ),
}


def job_rows(queue: str) -> list[tuple[str, str, int, int | None, int, int]]:
    """DatabaseQueue::buildDatabaseRecord(): queue, payload, attempts, reserved_at, available_at,
    created_at: 2 ready, 1 delayed, 1 reserved, and 1 of another queue."""
    now = int(time.time())
    return [
        (queue, "{}", 0, None, now - 10, now - 10),
        (queue, "{}", 0, None, now, now),
        (queue, "{}", 0, None, now + 600, now),
        (queue, "{}", 1, now - 1, now - 20, now - 20),
        ("other", "{}", 0, None, now - 10, now - 10),
    ]


INSERT = (
    "INSERT INTO {t} (queue, payload, attempts, reserved_at, available_at, created_at)"
    " VALUES ({p}, {p}, {p}, {p}, {p}, {p})"
)


def test_laravel_database_on_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "database.sqlite"
    table = f"jobs_{uuid.uuid4().hex[:8]}"
    with sqlite3.connect(path) as db:
        db.execute(JOBS_TABLE["sqlite"].format(t=table))
        db.executemany(INSERT.format(t=table, p="?"), job_rows("default"))
    url = f"sqlite:///{path}"
    assert counts(depth_of(f"laravel:default?table={table}", url)) == (2, 1, 1)
    # DB_QUEUE_TABLE names the table, as in config/queue.php.
    assert counts(depth_of("laravel:default", url, {"DB_QUEUE_TABLE": table})) == (2, 1, 1)
    # No such table: that queue is down, with the database's reason.
    (down,) = read_depths(
        parse_url(url, "QUEUE_URL"), parse_queue_depth("laravel:default"), timeout=5
    )
    assert not down.up
    assert "no such table" in (down.error or "")


def test_laravel_database_on_postgresql() -> None:
    require_server("postgresql")
    import psycopg

    table = f"jobs_{uuid.uuid4().hex[:8]}"
    url = "postgresql://postgres@127.0.0.1:5432/test"
    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test") as db:
        db.execute(JOBS_TABLE["postgresql"].format(t=table))
        with db.cursor() as cursor:
            cursor.executemany(INSERT.format(t=table, p="%s"), job_rows("default"))
        db.commit()
        try:
            assert counts(depth_of(f"laravel:default?table={table}", url)) == (2, 1, 1)
            assert counts(depth_of(f"laravel:default?table=public.{table}", url)) == (2, 1, 1)
        finally:
            db.execute(f"DROP TABLE {table}")
            db.commit()


def test_laravel_database_on_mariadb() -> None:
    require_server("mariadb")
    import pymysql

    table = f"jobs_{uuid.uuid4().hex[:8]}"
    url = "mysql://root@127.0.0.1:3306/test"
    db = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", database="test")
    try:
        with db.cursor() as cursor:
            cursor.execute(JOBS_TABLE["mysql"].format(t=table))
            cursor.executemany(INSERT.format(t=table, p="%s"), job_rows("default"))
        db.commit()
        try:
            assert counts(depth_of(f"laravel:default?table={table}", url)) == (2, 1, 1)
        finally:
            with db.cursor() as cursor:
                cursor.execute(f"DROP TABLE {table}")
            db.commit()
    finally:
        db.close()


# --- stores that cannot, or do not, answer ------------------------------------------


def test_unsupported_stores_are_one_clear_line() -> None:
    sqs = parse_url("https://sqs.eu-west-1.amazonaws.com", "QUEUE_CONNECTION")
    problem = check_store(sqs, parse_queue_depth("laravel:default"))
    assert problem is not None
    assert "not supported on a https store" in problem
    loop = Loop()
    with pytest.raises(ConfigError, match="not supported"):
        QueueDepths(loop, sqs, parse_queue_depth("laravel:default"))
    loop.close()
    pg = parse_url("postgresql://db/app", "QUEUE_URL")
    problem = check_store(pg, parse_queue_depth("rq:default"))
    assert problem is not None
    assert "'rq:default' is read from Redis" in problem
    assert check_store(pg, parse_queue_depth("laravel:default")) is None
    assert check_store(None, parse_queue_depth("rq:default")) is not None


def test_a_closed_port_and_a_wrong_type_are_down_not_errors(
    client: redis.Redis, cleanup: list[str]
) -> None:
    import socket

    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
        store = parse_url(f"redis://:s3cret-pw@127.0.0.1:{port}/0", "QUEUE_URL")
        (down,) = read_depths(store, parse_queue_depth("rq:default"), timeout=2)
    assert not down.up
    assert "refused" in (down.error or "").lower()
    name = unique("depth-wrongtype")
    cleanup.append(f"rq:queue:{name}")
    client.set(f"rq:queue:{name}", "not a list")
    wrong, right = read_depths(
        parse_url(REDIS_URL, "QUEUE_URL"),
        parse_queue_depth(f"rq:{name},sidekiq:{unique('none')}"),
        timeout=5,
    )
    assert not wrong.up
    assert "WRONGTYPE" in (wrong.error or "")
    assert right.up
    assert right.ready == 0
    assert depth_json((wrong, right)) == {wrong.label: None, right.label: 0}


def test_a_wrong_password_never_shows(client: redis.Redis) -> None:
    store = parse_url("redis://default:Wr0ng-Secret@127.0.0.1:6379/0", "QUEUE_URL")
    (depth,) = read_depths(store, parse_queue_depth("rq:default"), timeout=5)
    assert "Wr0ng-Secret" not in repr(depth)


# --- on the Loop -----------------------------------------------------------------------


class _Silent:
    """A hostile store: accepts connections and never says a word."""

    def __init__(self) -> None:
        import socket

        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.peers: list[object] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        try:
            while True:
                self.peers.append(self.sock.accept()[0])
        except OSError:
            return

    def close(self) -> None:
        import socket

        with self.sock:
            self.sock.shutdown(socket.SHUT_RDWR)
        for peer in self.peers:
            peer.close()  # type: ignore[attr-defined]


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    running = LoopThread()
    yield running
    running.stop()


class FakeRead:
    """A read that blocks until released: the concurrency of QueueDepths, step by step."""

    def __init__(self) -> None:
        self.calls = 0
        self.release = threading.Event()

    def __call__(
        self, _store: object, specs: object, *, timeout: float, now: float
    ) -> tuple[QueueDepth, ...]:
        self.calls += 1
        self.release.wait(timeout * 3)
        return (QueueDepth("rq:default", up=True, ready=self.calls),)


def reading_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "queue-depth"]


def test_one_read_at_a_time_and_a_cache_of_max_age(loop_thread: LoopThread) -> None:
    fake = FakeRead()
    store = parse_url(REDIS_URL, "QUEUE_URL")
    specs = parse_queue_depth("rq:default")
    fds = open_fds()
    depths = loop_thread.call(
        lambda: QueueDepths(loop_thread.loop, store, specs, timeout=5, max_age=0.5, read=fake)
    )
    answers: list[tuple[QueueDepth, ...]] = []
    loop_thread.call(lambda: depths.request(answers.append))
    loop_thread.call(lambda: depths.request(answers.append))
    assert answers == []
    assert loop_thread.call(lambda: depths.reads) == 1
    fake.release.set()
    sleep_until(lambda: len(answers) == 2, 5)
    assert answers[0] == answers[1]
    assert answers[0][0].ready == 1
    # Fresh: answered at once from the cache, no read.
    loop_thread.call(lambda: depths.request(answers.append))
    assert len(answers) == 3
    assert fake.calls == 1
    loop_thread.advance(0.6)  # past max_age: the next request reads again
    loop_thread.call(lambda: depths.request(answers.append))
    sleep_until(lambda: len(answers) == 4, 5)
    assert answers[3][0].ready == 2
    # The read's thread and its pipe are gone once it answered.
    sleep_until(lambda: not fds_left(fds) and not reading_threads(), 5)
    loop_thread.call(depths.close)


def test_a_read_past_its_timeout_answers_down(loop_thread: LoopThread) -> None:
    fake = FakeRead()
    store = parse_url(REDIS_URL, "QUEUE_URL")
    specs = parse_queue_depth("rq:default")
    depths = loop_thread.call(
        lambda: QueueDepths(loop_thread.loop, store, specs, timeout=0.3, max_age=0.1, read=fake)
    )
    answers: list[tuple[QueueDepth, ...]] = []
    started = time.monotonic()
    loop_thread.call(lambda: depths.request(answers.append))
    sleep_until(lambda: answers, 5)
    assert 0.3 <= time.monotonic() - started < 1.5
    assert answers[0][0].up is False
    assert "timed out" in (answers[0][0].error or "")
    # Still in flight: a new request is answered at once, down, without a second read.
    loop_thread.call(lambda: depths.request(answers.append))
    assert len(answers) == 2
    assert fake.calls == 1
    fake.release.set()
    sleep_until(lambda: loop_thread.call(lambda: depths.latest)[0].up, 5)  # type: ignore[index]
    loop_thread.call(depths.close)


def test_a_scrape_waits_for_the_depth_or_its_timeout(
    loop_thread: LoopThread, client: redis.Redis, cleanup: list[str]
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from entrypoint.runtime.metrics import MetricsServer, Snapshot
    from tests.test_metrics_server import scrape

    name = unique("depth-scrape")
    cleanup.append(f"rq:queue:{name}")
    client.rpush(f"rq:queue:{name}", "a", "b", "c")
    specs = parse_queue_depth(f"rq:{name}")

    def serve(url: str, timeout: float) -> MetricsServer:
        depths = QueueDepths(loop_thread.loop, parse_url(url, "QUEUE_URL"), specs, timeout=timeout)
        return MetricsServer(loop_thread.loop, "127.0.0.1", 0, Snapshot, depths=depths)

    def sample(body: bytes, family: str) -> float | None:
        for metric in text_string_to_metric_families(body.decode()):
            if metric.name == family:
                return next((s.value for s in metric.samples), None)
        return None

    server = loop_thread.call(lambda: serve(REDIS_URL, 2.0))
    _status, _headers, body = scrape(server.address[1])
    assert sample(body, "entrypoint_queue_depth") == 3
    assert sample(body, "entrypoint_queue_depth_up") == 1
    loop_thread.call(server.close)

    silent = _Silent()
    try:
        server = loop_thread.call(lambda: serve(f"redis://127.0.0.1:{silent.port}", 0.5))
        started = time.monotonic()
        status, _headers, body = scrape(server.address[1])
        elapsed = time.monotonic() - started
        assert status == 200
        assert 0.5 <= elapsed < 2.0
        assert sample(body, "entrypoint_queue_depth") is None
        assert sample(body, "entrypoint_queue_depth_up") == 0
        loop_thread.call(server.close)
    finally:
        silent.close()
