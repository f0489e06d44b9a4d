"""A real queue worker under the entrypoint: `rq worker` on the Redis of this machine."""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Running, base_env, entrypoint, sleep_until
from tests.servers import missing, require_server


@pytest.fixture
def queue() -> Iterator[Any]:
    host, port = require_server("redis")
    try:
        from redis import Redis
        from rq import Queue
    except ImportError as exc:
        missing(f"rq is not installed ({exc})")
    connection = Redis(host=host, port=port, db=0)
    name = f"entrypoint-test-{uuid.uuid4().hex[:8]}"
    queue = Queue(name, connection=connection)
    yield queue
    queue.delete(delete_jobs=True)
    connection.close()


def rq_worker(queue: Any) -> Running:
    url = "redis://127.0.0.1:6379/0"
    env = base_env(
        MODE="worker",
        QUEUE_URL=url,
        WORKER_CMD=f"rq worker --url {url} --name {queue.name}-{uuid.uuid4().hex[:6]} {queue.name}",
        ENTRYPOINT_STOP_TIMEOUT="20",
    )
    return entrypoint("run", env=env)


def test_term_lets_the_job_in_flight_finish_and_no_job_is_lost(queue: Any, tmp_path: Path) -> None:
    first = str(tmp_path / "first")
    job = queue.enqueue("tests.rq_jobs.slow", first, 2.0)
    with rq_worker(queue) as run:
        run.wait_event("dependency_ready", timeout=15)
        sleep_until(lambda: Path(first + ".started").exists(), 30)
        run.signal(signal.SIGTERM)
        code = run.wait(30)
        exited = run.events("child_exited")[-1]["exit_code"]
        assert code == exited == 0
        assert Path(first + ".done").exists()
        assert job.get_status(refresh=True) == "finished"
        assert run.events("stop_finished")
        assert not run.events("stop_escalated")

    later = [str(tmp_path / f"later-{n}") for n in range(3)]
    jobs = [queue.enqueue("tests.rq_jobs.slow", path, 0.1) for path in later]
    with rq_worker(queue) as run:
        sleep_until(lambda: all(Path(p + ".done").exists() for p in later), 30)
        run.signal(signal.SIGTERM)
        assert run.wait(30) == 0
    assert [j.get_status(refresh=True) for j in jobs] == ["finished"] * 3
