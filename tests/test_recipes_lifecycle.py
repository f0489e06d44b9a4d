"""The docs/recipes.md stops, measured with the real libraries on the Redis of this machine.

Huey (its graceful signal is INT), arq (`job_completion_wait`, or the running
job is cancelled and run again later), Dramatiq (TERM waits for the job in
flight, up to `--worker-shutdown-timeout`) and uvicorn (it re-raises SIGTERM
after a clean shutdown: a supervised uvicorn exits 143). Each job marks its
start and its end in files (tests/recipes/jobs.py); the applications are in
tests/recipes/.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ENTRYPOINT, Running, base_env, descendants, sleep_until
from tests.servers import missing, require_server

REDIS_URL = "redis://127.0.0.1:6379/0"


def need(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        missing(f"{module} is not installed (pip install {module})")


@pytest.fixture
def queue_name() -> Iterator[str]:
    """A unique name for the test's queue; every Redis key holding it is deleted after."""
    require_server("redis")
    from redis import Redis

    name = f"entrypoint-test-{uuid.uuid4().hex[:8]}"
    yield name
    redis = Redis.from_url(REDIS_URL)
    for key in redis.scan_iter(f"*{name}*"):
        redis.delete(key)
    redis.close()


def supervised(argv: list[str], name: str, **env: str) -> Running:
    settings = {"MODE": "worker", "QUEUE_URL": REDIS_URL, "RECIPE_QUEUE": name, **env}
    return Running([*ENTRYPOINT, "run", "--", *argv], base_env(**settings))


def stop_mid_job(run: Running, path: str) -> int:
    """TERM the entrypoint once the job has started; its exit status."""
    sleep_until(lambda: Path(path + ".started").exists(), 60)
    assert not Path(path + ".done").exists()
    run.signal(signal.SIGTERM)
    return run.wait(30)


# --- Huey -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "options", "finished"),
    [
        ({}, [], False),  # TERM is Huey's "interrupt": the job in flight is cut, and lost
        ({"ENTRYPOINT_STOP_SIGNAL": "INT"}, [], True),
        ({}, ["--graceful-signal", "TERM"], True),  # or make TERM graceful (Huey 3)
    ],
)
def test_huey_finishes_the_job_in_flight_only_on_its_graceful_signal(
    queue_name: str, tmp_path: Path, env: dict[str, str], options: list[str], finished: bool
) -> None:
    need("huey")
    from tests.recipes import huey_app

    _huey, work = huey_app.make(queue_name)
    path = str(tmp_path / "job")
    work(path, 2.0)
    argv = ["huey_consumer", "tests.recipes.huey_app.huey", "-w", "1", *options]
    with supervised(argv, queue_name, **env) as run:
        assert stop_mid_job(run, path) == 0
    assert Path(path + ".done").exists() is finished
    assert not run.events("stop_escalated")
    if env:
        assert run.events("signal_forwarded")[0]["signal"] == "SIGINT"


# --- arq ----------------------------------------------------------------------------


async def _arq_enqueue(name: str, path: str, seconds: float) -> str:
    from arq import create_pool
    from arq.connections import RedisSettings

    pool = await create_pool(RedisSettings(host="127.0.0.1", port=6379, database=0))
    job = await pool.enqueue_job("work", path, seconds, _queue_name=name)
    await pool.aclose()
    assert job is not None
    return str(job.job_id)


@pytest.fixture
def arq_job_keys() -> Iterator[list[str]]:
    """Job ids whose `arq:*:ID` keys are deleted after the test."""
    ids: list[str] = []
    yield ids
    from redis import Redis

    redis = Redis.from_url(REDIS_URL)
    for job_id in ids:
        for key in redis.scan_iter(f"arq:*{job_id}*"):
            redis.delete(key)
    redis.close()


def arq_worker(name: str, **env: str) -> Running:
    return supervised(["arq", "tests.recipes.arq_app.WorkerSettings"], name, **env)


def test_arq_with_job_completion_wait_finishes_the_job(
    queue_name: str, tmp_path: Path, arq_job_keys: list[str]
) -> None:
    need("arq")
    path = str(tmp_path / "job")
    arq_job_keys.append(asyncio.run(_arq_enqueue(queue_name, path, 2.0)))
    with arq_worker(queue_name, RECIPE_JOB_COMPLETION_WAIT="20") as run:
        assert stop_mid_job(run, path) == 0
    assert Path(path + ".done").exists()
    assert not run.events("stop_escalated")


def test_arq_without_it_cancels_the_job_which_runs_again_later(
    queue_name: str, tmp_path: Path, arq_job_keys: list[str]
) -> None:
    need("arq")
    path = str(tmp_path / "job")
    arq_job_keys.append(asyncio.run(_arq_enqueue(queue_name, path, 2.0)))
    with arq_worker(queue_name) as run:
        assert stop_mid_job(run, path) == 0
        assert any("cancelled, will be run again" in line for line in run.stderr)
    assert not Path(path + ".done").exists()
    Path(path + ".started").unlink()
    # The next worker runs it again, from the start (at least once, not exactly once).
    with arq_worker(queue_name) as again:
        sleep_until(lambda: Path(path + ".done").exists(), 60)
        again.signal(signal.SIGTERM)
        assert again.wait(30) == 0
    assert Path(path + ".started").exists()


# --- Dramatiq -----------------------------------------------------------------------


def dramatiq_enqueue(name: str, path: str, seconds: float) -> None:
    from dramatiq import Message

    from tests.recipes.dramatiq_app import broker_for

    broker = broker_for(name)
    broker.declare_queue("default")
    message: Message[Any] = Message(
        queue_name="default", actor_name="work", args=(path, seconds), kwargs={}, options={}
    )
    broker.enqueue(message)
    broker.close()


@pytest.mark.parametrize(
    ("options", "finished"), [([], True), (["--worker-shutdown-timeout", "500"], False)]
)
def test_dramatiq_term_waits_for_the_job_up_to_its_shutdown_timeout(
    queue_name: str, tmp_path: Path, options: list[str], finished: bool
) -> None:
    need("dramatiq")
    path = str(tmp_path / "job")
    # Dramatiq's worker processes look at their stop flag once a second: the job that
    # is to be cut runs well past that and the 0.5 s shutdown timeout.
    dramatiq_enqueue(queue_name, path, 2.0 if finished else 8.0)
    argv = ["dramatiq", "tests.recipes.dramatiq_app", "--processes", "1", "--threads", "1"]
    with supervised([*argv, *options], queue_name) as run:
        assert stop_mid_job(run, path) == 0
    assert Path(path + ".done").exists() is finished
    assert not run.events("stop_escalated")
    if not finished:
        # Not acknowledged: Redis keeps it for another worker, once this one's heartbeat expires.
        from redis import Redis

        redis = Redis.from_url(REDIS_URL)
        assert redis.hlen(f"{queue_name}:default.msgs") == 1
        redis.close()


# --- uvicorn ------------------------------------------------------------------------

# A uvicorn whose SIGTERM, re-raised after its clean shutdown, exits 0 (docs/recipes.md).
UVICORN_EXIT_0 = (
    "import signal, sys; signal.signal(signal.SIGTERM, lambda *_: sys.exit(0)); "
    "from uvicorn.main import main; main()"
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


@pytest.mark.parametrize(("wrapped", "code"), [(False, 128 + signal.SIGTERM), (True, 0)])
def test_a_supervised_uvicorn_exits_143_after_a_clean_shutdown(wrapped: bool, code: int) -> None:
    need("uvicorn")
    port = free_port()
    app = ["tests.recipes.asgi_app:app", "--port", str(port)]
    argv = [sys.executable, "-c", UVICORN_EXIT_0, *app] if wrapped else ["uvicorn", *app]
    with Running([*ENTRYPOINT, "run", "--", *argv], base_env(MODE="worker")) as run:
        sleep_until(lambda: listening(port), 30)
        run.signal(signal.SIGTERM)
        assert run.wait(20) == code
    assert "lifespan shutdown complete" in "\n".join(run.stdout)  # clean, either way
    assert run.events("child_exited")[0]["exit_code"] == code
    assert run.events("child_exited")[0]["reason"] == "stop"


def test_uvicorn_as_pid1_in_web_mode_exits_0() -> None:
    """Exec'd as PID 1 (web mode in a container) the re-raised SIGTERM is ignored: 0."""
    need("uvicorn")
    unshare = ["unshare", "--pid", "--fork", "--mount-proc"]
    if shutil.which("unshare") is None:
        missing("unshare (util-linux) is not installed")
    probe = subprocess.run([*unshare, "true"], capture_output=True, timeout=10, check=False)
    if probe.returncode != 0:
        missing("cannot make a PID namespace here")
    port = free_port()
    argv = ["uvicorn", "tests.recipes.asgi_app:app", "--port", str(port)]
    with Running([*unshare, *ENTRYPOINT, "run", "--", *argv], base_env(MODE="web")) as run:
        sleep_until(lambda: listening(port), 30)
        (init,) = sleep_until(lambda: descendants(run.pid)[:1], 5)
        os.kill(init, signal.SIGTERM)
        assert run.wait(20) == 0
    assert "lifespan shutdown complete" in "\n".join(run.stdout)
