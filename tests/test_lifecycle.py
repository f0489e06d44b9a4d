"""Lifecycle with real processes: restart policies, exit reasons, stop budgets.

Memory recycling and OOM kills: tests/test_lifecycle_memory.py; descendants
left behind: tests/test_lifecycle_descendants.py.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    CHILD,
    ROOT,
    Running,
    base_env,
    entrypoint,
    run_entrypoint,
    sleep_until,
)
from tests.servers import missing, require_server

REDIS_URL = "redis://127.0.0.1:6379/0"


def worker(*child_args: str, **env: str) -> Running:
    settings = {"MODE": "worker", "ENTRYPOINT_STOP_TIMEOUT": "10", **env}
    return entrypoint("run", "--", *CHILD, *child_args, env=base_env(**settings))


def child_pid(run: Running, timeout: float = 10, count: int = 1) -> int:
    return int(run.wait_stdout(r"^ready \(pid: (\d+)\)", timeout, count)[-1].group(1))


def planned(tmp_path: Path, plan: str, *extra: str, **env: str) -> Running:
    return worker("--runs", str(tmp_path / "runs"), "--plan", plan, *extra, **env)


# --- ENTRYPOINT_RESTART ------------------------------------------------------------


def test_on_failure_a_clean_exit_ends_the_entrypoint_with_0_within_a_second(
    tmp_path: Path,
) -> None:
    with planned(tmp_path, "ok", ENTRYPOINT_RESTART="on-failure") as run:
        run.wait_stdout(r"^run 1 step ok")
        said = time.monotonic()  # the child's last word: it returns 0 right after
        assert run.wait(5) == 0
        assert time.monotonic() - said < 1.0
    assert len(run.events("child_started")) == 1
    assert not run.events("restart_scheduled")
    (finished,) = run.events("stop_finished")
    assert finished["exit_code"] == 0
    assert "on-failure" in finished["reason"]
    assert run.events("child_exited")[0]["reason"] == "exit"


def test_on_failure_a_failure_still_restarts_with_backoff(tmp_path: Path) -> None:
    env = {"ENTRYPOINT_RESTART": "on-failure", "ENTRYPOINT_BACKOFF_INITIAL": "0.05"}
    with planned(tmp_path, "fail,kill9,ok", **env) as run:
        assert run.wait(15) == 0
    assert [e["exit_code"] for e in run.events("child_exited")] == [1, 137, 0]
    assert [e["attempt"] for e in run.events("restart_scheduled")] == [1, 2]
    assert len(run.events("child_started")) == 3


def test_on_failure_a_stop_mid_job_is_still_graceful() -> None:
    with worker("--on-term", "finish", "--work", "1", ENTRYPOINT_RESTART="on-failure") as run:
        child_pid(run)
        run.signal(signal.SIGTERM)
        run.wait_stdout(r"^finishing job")
        assert run.wait(10) == 0
        assert run.wait_stdout(r"^job finished")
    assert not run.events("stop_escalated")
    assert run.events("child_exited")[0]["reason"] == "stop"
    assert len(run.events("child_started")) == 1


@pytest.mark.parametrize(
    ("plan", "code"), [("ok", 0), ("fail", 1), ("kill9", 128 + signal.SIGKILL)]
)
def test_never_any_exit_ends_the_entrypoint_with_the_childs_status(
    tmp_path: Path, plan: str, code: int
) -> None:
    with planned(tmp_path, f"{plan},serve", ENTRYPOINT_RESTART="never") as run:
        assert run.wait(10) == code
    assert len(run.events("child_started")) == 1
    assert not run.events("restart_scheduled")
    assert run.events("stop_finished")[0]["exit_code"] == code


@pytest.mark.parametrize("value", ["sometimes", "on failure", "unless-stopped"])
def test_an_unknown_restart_policy_is_78_naming_the_variable_and_the_forms(value: str) -> None:
    result = run_entrypoint(
        "run", "--", *CHILD, env=base_env(MODE="worker", ENTRYPOINT_RESTART=value)
    )
    assert result.returncode == 78
    (line,) = result.stderr.splitlines()
    assert f"ENTRYPOINT_RESTART={value}" in line
    assert "always, on-failure, never" in line
    assert "child_started" not in result.stderr


# --- run to completion with real queues ------------------------------------------------


@pytest.fixture
def rq_queue() -> Iterator[Any]:
    host, port = require_server("redis")
    try:
        from redis import Redis
        from rq import Queue
    except ImportError as exc:
        missing(f"rq is not installed ({exc})")
    connection = Redis(host=host, port=port, db=0)
    queue = Queue(f"entrypoint-test-{uuid.uuid4().hex[:8]}", connection=connection)
    yield queue
    queue.delete(delete_jobs=True)
    for key in connection.scan_iter(f"rq:*{queue.name}*"):
        connection.delete(key)
    connection.close()


def rq_burst(queue: Any, **env: str) -> Running:
    command = f"rq worker --burst --url {REDIS_URL} --name {queue.name}-{uuid.uuid4().hex[:6]}"
    settings = {
        "MODE": "worker",
        "QUEUE_URL": REDIS_URL,
        "WORKER_CMD": f"{command} {queue.name}",
        "ENTRYPOINT_RESTART": "on-failure",
        "ENTRYPOINT_STOP_TIMEOUT": "20",
        **env,
    }
    return entrypoint("run", env=base_env(**settings))


def test_rq_burst_drains_the_queue_and_the_entrypoint_exits_0(
    rq_queue: Any, tmp_path: Path
) -> None:
    paths = [str(tmp_path / f"job-{n}") for n in range(3)]
    jobs = [rq_queue.enqueue("tests.rq_jobs.slow", path, 0.1) for path in paths]
    with rq_burst(rq_queue) as run:
        run.wait_event("child_exited", timeout=60)
        exited = time.monotonic()
        assert run.wait(5) == 0
        assert time.monotonic() - exited < 1.0
    assert [job.get_status(refresh=True) for job in jobs] == ["finished"] * 3
    assert all(Path(path + ".done").exists() for path in paths)
    assert len(run.events("child_started")) == 1
    assert run.events("child_exited")[0]["exit_code"] == 0


def test_rq_burst_stopped_mid_job_finishes_the_job(rq_queue: Any, tmp_path: Path) -> None:
    path = str(tmp_path / "long")
    job = rq_queue.enqueue("tests.rq_jobs.slow", path, 2.0)
    with rq_burst(rq_queue) as run:
        sleep_until(lambda: Path(path + ".started").exists(), 60)
        run.signal(signal.SIGTERM)
        assert run.wait(30) == 0
    assert Path(path + ".done").exists()
    assert job.get_status(refresh=True) == "finished"
    assert not run.events("stop_escalated")
    assert run.events("child_exited")[0]["reason"] == "stop"


@pytest.fixture
def php(tmp_path: Path) -> Path:
    """A `php` on PATH that runs the artisan stand-in (tests/artisan_standin.py)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "php"
    shim.write_text(
        f'#!/bin/sh\nexec "{sys.executable}" "{ROOT / "tests" / "artisan_standin.py"}" "$@"\n'
    )
    shim.chmod(0o755)
    return bin_dir


def laravel_env(php: Path, **extra: str) -> dict[str, str]:
    env = base_env(
        MODE="worker",
        QUEUE_CONNECTION="redis",
        REDIS_URL=REDIS_URL,
        ENTRYPOINT_RESTART="on-failure",
        **extra,
    )
    env["PATH"] = os.pathsep.join((str(php), env["PATH"]))
    return env


def test_laravel_stop_when_empty_ends_the_entrypoint_with_0(php: Path, tmp_path: Path) -> None:
    require_server("redis")
    from redis import Redis

    queue = f"entrypoint-test-{uuid.uuid4().hex[:8]}"
    redis = Redis.from_url(REDIS_URL)
    paths = [str(tmp_path / f"job-{n}") for n in range(3)]
    try:
        for path in paths:
            redis.rpush(f"queues:{queue}", json.dumps({"touch": path, "seconds": 0.05}))
        command = f"php artisan queue:work redis --queue={queue} --stop-when-empty --timeout=5"
        with entrypoint("run", env=laravel_env(php, WORKER_CMD=command)) as run:
            run.wait_event("child_exited", timeout=30)
            exited = time.monotonic()
            assert run.wait(5) == 0
            assert time.monotonic() - exited < 1.0
        assert all(Path(path + ".done").exists() for path in paths)
        assert redis.llen(f"queues:{queue}") == 0
        assert len(run.events("child_started")) == 1
        assert not run.events("stop_budget_short")  # 5 s is below the default 25 s
    finally:
        redis.delete(f"queues:{queue}")
        redis.close()


# --- why the child ended ----------------------------------------------------------


def reasons(run: Running) -> list[str]:
    return [event["reason"] for event in run.events("child_exited")]


def test_reason_exit_when_it_exits_by_itself(tmp_path: Path) -> None:
    with planned(tmp_path, "fail,serve", ENTRYPOINT_BACKOFF_INITIAL="0.05") as run:
        child_pid(run)
        run.signal(signal.SIGTERM)
        assert run.wait(10) == 0
    assert reasons(run) == ["exit", "stop"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_reason_signal_when_someone_else_kills_it(signum: int) -> None:
    # --die-by: on TERM it dies of TERM itself, as a worker without a handler would.
    with worker("--die-by", str(signal.SIGTERM), ENTRYPOINT_BACKOFF_INITIAL="0.05") as run:
        os.kill(child_pid(run), signum)
        run.wait_event("child_started", count=2)
        (exited,) = run.events("child_exited")
        assert exited["exit_code"] == 128 + signum
        assert exited["reason"] == "signal"
        assert run.events("restart_scheduled")[0]["attempt"] == 1  # a failure
        child_pid(run, count=2)
        run.signal(signal.SIGTERM)
        assert run.wait(10) == 128 + signal.SIGTERM  # died of the forwarded TERM
    assert reasons(run) == ["signal", "stop"]


def test_reason_stop_however_the_child_then_died() -> None:
    with worker("--on-term", "ignore", ENTRYPOINT_STOP_TIMEOUT="0.5") as run:
        child_pid(run)
        run.signal(signal.SIGTERM)
        assert run.wait(10) == 128 + signal.SIGKILL
    assert run.events("stop_escalated")
    assert reasons(run) == ["stop"]


def test_reason_watchdog_when_no_heartbeat_comes(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    env = {
        "ENTRYPOINT_HEARTBEAT_FILE": str(tmp_path / "heartbeat"),
        "ENTRYPOINT_WATCHDOG_TIMEOUT": "0.5",
        "ENTRYPOINT_BACKOFF_INITIAL": "0.05",
        "ENTRYPOINT_STATE_FILE": str(state),
    }
    with worker(**env) as run:
        run.wait_event("watchdog_expired", timeout=10)
        run.wait_event("child_started", count=2)
        (exited,) = run.events("child_exited")
        assert exited["reason"] == "watchdog"
        assert exited["exit_code"] == 0  # it exited by itself on the stop signal
        assert run.events("restart_scheduled")[0]["attempt"] == 1  # a failure
        status = run_entrypoint(
            "status", "--json", env=base_env(MODE="worker", ENTRYPOINT_STATE_FILE=str(state))
        )
        document = json.loads(status.stdout)
        assert (document["last_exit_code"], document["last_exit_reason"]) == (0, "watchdog")
        run.signal(signal.SIGTERM)
        run.wait(10)


# --- stop budgets ---------------------------------------------------------------------


def check_run(argv: list[str], **env: str) -> Any:
    return run_entrypoint("check", "--", *argv, env=base_env(MODE="worker", **env))


LARAVEL_3600 = ["php", "artisan", "queue:work", "--timeout=3600"]


def test_laravel_timeout_above_the_stop_timeout_is_said_by_check_which_exits_0() -> None:
    result = check_run(LARAVEL_3600)
    assert result.returncode == 0, result.stderr
    (warning,) = [line for line in result.stdout.splitlines() if line.startswith("warning:")]
    assert "queue:work --timeout (3600 s)" in warning
    assert "ENTRYPOINT_STOP_TIMEOUT (25 s)" in warning


def test_run_logs_stop_budget_short_and_starts_the_worker(php: Path, tmp_path: Path) -> None:
    started = tmp_path / "started"
    env = laravel_env(php, ARTISAN_STARTED=str(started), ENTRYPOINT_WAIT_TIMEOUT="0")
    env.pop("QUEUE_CONNECTION")
    with entrypoint("run", "--", *LARAVEL_3600, env=env) as run:
        (short,) = run.wait_event("stop_budget_short")
        assert short["worker_timeout_s"] == 3600
        assert short["stop_timeout_s"] == 25
        assert short["level"] == "warning"
        run.wait_event("child_started")
        sleep_until(started.exists, 10)
        run.signal(signal.SIGTERM)
        assert run.wait(10) == 0


@pytest.mark.parametrize("command", ["check", "run"])
def test_strict_makes_a_short_budget_78_and_run_starts_nothing(
    command: str, php: Path, tmp_path: Path
) -> None:
    started = tmp_path / "started"
    env = laravel_env(php, ENTRYPOINT_STRICT="1", ARTISAN_STARTED=str(started))
    env.pop("QUEUE_CONNECTION")
    result = run_entrypoint(command, "--", *LARAVEL_3600, env=env)
    assert result.returncode == 78
    (line,) = result.stderr.splitlines()
    assert "queue:work --timeout (3600 s)" in line
    assert "ENTRYPOINT_STRICT=1" in line
    assert "child_started" not in result.stderr
    assert not started.exists()


@pytest.mark.parametrize(
    ("argv", "stop_timeout", "short"),
    [
        (["php", "artisan", "queue:work", "--timeout=25"], "25", True),  # equal is short
        (["php", "artisan", "queue:work", "--timeout=24"], "25", False),
        (["php", "artisan", "queue:work", "--timeout", "60"], "2m", False),
        (["/app/artisan", "queue:listen", "--timeout=90"], "60", True),
        (["bundle", "exec", "sidekiq", "-t", "30"], "25", True),
        (["sidekiq", "--timeout", "8"], "25", False),
        (["sidekiq", "-t25"], "25", True),
        # Celery with both limits: the larger counts, whichever order they come in.
        (["celery", "-A", "app", "worker", "--soft-time-limit=10", "--time-limit=30"], "20", True),
        (["celery", "worker", "--time-limit", "30", "--soft-time-limit", "10"], "20", True),
        (["celery", "-A", "app", "worker", "--soft-time-limit=10", "--time-limit=30"], "31", False),
        (["celery", "-A", "app", "beat", "--time-limit=300"], "25", False),  # not a worker
        (["rq", "worker", "--timeout", "3600"], "25", False),  # not one the entrypoint knows
    ],
)  # fmt: skip
def test_which_budgets_are_short(argv: list[str], stop_timeout: str, short: bool) -> None:
    result = check_run(argv, ENTRYPOINT_STOP_TIMEOUT=stop_timeout)
    assert result.returncode == 0, result.stderr
    assert ("not below ENTRYPOINT_STOP_TIMEOUT" in result.stdout) is short, result.stdout
    strict = check_run(argv, ENTRYPOINT_STOP_TIMEOUT=stop_timeout, ENTRYPOINT_STRICT="1")
    assert strict.returncode == (78 if short else 0), strict.stderr
