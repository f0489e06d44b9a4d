"""The demo app the image packages, as real processes on this machine (no engine needed)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.container.conftest import DEMO, http_json, wait_until
from tests.servers import require_server

sys.path.insert(0, str(DEMO))
from demo.config import QueueConfigError
from demo.queues import (
    Job,
    JobQueue,
    SqliteQueue,
    SqlQueue,
    open_queue,
    sqlite_path,
)


def demo_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("QUEUE_URL", "DEMO_QUEUE")}
    env["PYTHONPATH"] = str(DEMO)
    env["QUEUE_URL"] = f"sqlite://{tmp_path}/queue.sqlite3"
    env["DEMO_POLL_INTERVAL"] = "0.05"
    env.update(extra)
    return env


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def spawn(
    procs: list[subprocess.Popen[bytes]], module: str, env: dict[str, str], log: Path
) -> subprocess.Popen[bytes]:
    """Start `python -m module`, its stderr into `log`."""
    with log.open("ab") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", module], env=env, stderr=stderr, stdout=subprocess.DEVNULL
        )
    procs.append(proc)
    return proc


def statuses(queue: SqliteQueue) -> dict[str, tuple[str, int, str | None]]:
    return {job.id: (job.status, job.runs, job.worker) for job in queue.jobs(1000)}


def job_status(queue: JobQueue, job_id: str) -> str | None:
    return next((job.status for job in queue.jobs(1000) if job.id == job_id), None)


def all_finished(queue: JobQueue, ids: list[str]) -> dict[str, Job] | None:
    jobs = {job.id: job for job in queue.jobs(1000)}
    return (
        jobs
        if all(jobs[i].status == "finished" for i in ids if i in jobs) and set(ids) <= set(jobs)
        else None
    )


def test_sqlite_urls_are_read_as_the_entrypoint_reads_them(tmp_path: Path) -> None:
    assert sqlite_path("sqlite:///var/lib/q.db") == "/var/lib/q.db"
    assert sqlite_path("sqlite:////var/lib/q.db") == "/var/lib/q.db"
    assert sqlite_path("sqlite:demo-data/q.db") == "demo-data/q.db"
    with pytest.raises(QueueConfigError, match="no host"):
        sqlite_path("sqlite://db.example/q.db")
    with pytest.raises(QueueConfigError, match="speaks sqlite://, redis:// and postgresql://"):
        open_queue({"QUEUE_URL": "amqp://guest:guest@localhost/"})


@pytest.fixture(params=["sqlite", "postgresql", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of a demo process on one backend, with a queue of its own."""
    name = f"test-{uuid.uuid4().hex[:8]}"
    if request.param == "sqlite":
        yield demo_env(tmp_path, DEMO_QUEUE=name)
        return
    host, port = require_server(request.param)
    if request.param == "postgresql":
        url = f"postgresql://postgres@{host}:{port}/test"
        yield demo_env(tmp_path, QUEUE_URL=url, DEMO_QUEUE=name)
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DELETE FROM demo_jobs WHERE queue = %s", (name,))
        return
    yield demo_env(tmp_path, QUEUE_URL=f"redis://{host}:{port}/0", DEMO_QUEUE=name)
    from redis import Redis

    client = Redis(host=host, port=port)
    keys = [*client.scan_iter(f"demo:{name}:*"), *client.scan_iter(f"rq:*{name}*")]
    if keys:
        client.delete(*keys)
    client.close()


def test_three_workers_take_every_job_exactly_once(
    backend: dict[str, str], tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    queue = open_queue(backend)
    ids = [job.id for job in queue.enqueue(30, 0.05)]
    workers = [spawn(procs, "demo.worker", backend, tmp_path / f"worker{n}.log") for n in range(3)]

    done = wait_until(lambda: all_finished(queue, ids), 30, "30 jobs to finish")
    assert all(done[i].runs == 1 for i in ids)
    by = {done[i].worker for i in ids}
    assert by <= {f"{socket.gethostname()}/{proc.pid}" for proc in workers}
    assert len(by) > 1
    for proc in workers:
        proc.send_signal(signal.SIGTERM)
    assert [proc.wait(timeout=15) for proc in workers] == [0, 0, 0]


def test_term_finishes_the_job_in_flight(
    backend: dict[str, str], tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    queue = open_queue(backend)
    (job,) = queue.enqueue(1, 1.0)
    log = tmp_path / "worker.log"
    worker = spawn(procs, "demo.worker", backend, log)
    wait_until(lambda: job_status(queue, job.id) == "started", 15, "the job to start")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=15) == 0
    (done,) = [j for j in queue.jobs() if j.id == job.id]
    assert (done.status, done.runs) == ("finished", 1)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=True)
def test_a_second_term_gives_the_job_back(
    backend: dict[str, str], tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    queue = open_queue(backend)  # SQL queues only: RQ's cold shutdown is RQ's own
    assert isinstance(queue, SqlQueue)
    (job,) = queue.enqueue(1, 60)
    log = tmp_path / "worker.log"
    worker = spawn(procs, "demo.worker", backend, log)
    wait_until(lambda: job_status(queue, job.id) == "started", 15, "the long job to start")
    worker.send_signal(signal.SIGTERM)
    wait_until(lambda: "count=1" in log.read_text(), 10, "the first TERM to be seen")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=10) == 1
    (back,) = [j for j in queue.jobs() if j.id == job.id]
    assert (back.status, back.runs, back.worker) == ("queued", 1, None)
    assert "action=stop_now" in log.read_text()
    assert "job_released" in log.read_text()


def test_a_job_whose_worker_vanished_is_offered_again(tmp_path: Path) -> None:
    queue = SqliteQueue(str(tmp_path / "queue.sqlite3"))
    (job,) = queue.enqueue(1, 0)
    claimed = queue.claim("host-a/1")
    assert claimed is not None
    assert claimed.id == job.id
    assert queue.claim("host-b/2") is None  # its lease still runs
    import sqlite3

    with sqlite3.connect(queue.path) as conn:
        conn.execute("UPDATE demo_jobs SET lease_until = 0")
    again = queue.claim("host-b/2")
    assert again is not None
    assert (again.id, again.runs, again.worker) == (job.id, 2, "host-b/2")
    queue.finish(job.id, "host-a/1")  # the vanished worker's late word counts for nothing
    assert statuses(queue)[job.id] == ("started", 2, "host-b/2")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_web_app_enqueues_lists_and_stops_on_term(
    tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = demo_env(tmp_path, PORT=str(port), HOST="127.0.0.1")
    web = spawn(procs, "demo.web", env, tmp_path / "web.log")
    wait_until(lambda: _answers(f"{base}/healthz"), 15, "the web app to answer")

    assert http_json(f"{base}/healthz") == {"status": "ok", "queue": "sqlite"}
    created = http_json(f"{base}/jobs", {"count": 3, "seconds": 0.5})
    assert [job["status"] for job in created] == ["queued"] * 3
    form = urllib.request.Request(f"{base}/jobs", data=b"count=2&seconds=1")  # noqa: S310
    with urllib.request.urlopen(form, timeout=5) as response:  # noqa: S310 - loopback
        assert response.url == f"{base}/"  # 303 to the page
        page = response.read().decode()
    assert "entrypoint demo" in page
    assert "queued: 5" in page
    listed = http_json(f"{base}/jobs")
    assert len(listed) == 5
    assert set(listed[0]) >= {"id", "status", "worker", "enqueued_at", "finished_at", "runs"}
    with pytest.raises(urllib.error.HTTPError) as bad:
        http_json(f"{base}/jobs", {"count": 0})
    assert bad.value.code == 400
    assert "count must be between 1" in bad.value.read().decode()

    web.send_signal(signal.SIGTERM)
    assert web.wait(timeout=10) == 0


def _answers(url: str) -> bool:
    try:
        http_json(url)
    except OSError:
        return False
    return True
