"""Every mode on a read-only root filesystem, as a non-root user, with no tmpfs at all.

`docker run --read-only --user U:0 --cap-drop ALL --security-opt no-new-privileges`,
for U the `nobody` of most images (65534) and an arbitrary uid as OpenShift
assigns them (1000680000). Nothing is writable but /dev/shm, which the engine
mounts in every container, --read-only or not. `health` must tell the truth:
0 while the child runs, 1 once it is gone.
"""

from __future__ import annotations

import pytest

from tests.container.conftest import (
    PHP_IMAGE,
    Docker,
    child_pid,
    exec_in,
    inspect,
    logs,
    pid1_argv,
    require_image,
    run,
    wait_until,
)

pytestmark = pytest.mark.docker

LOCKED = ("--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges")
# Long enough for `health` to be seen answering 1 between a crash and the restart.
BACKOFF = ("-e", "ENTRYPOINT_BACKOFF_INITIAL=4")
USERS = ("65534:0", "1000680000:0")


def healthy(container: str, *argv: str) -> bool:
    return exec_in(container, *(argv or ("entrypoint",)), "health").returncode == 0


def assert_truthful_health(container: str, entrypoint: str, uid: str, started: str) -> None:
    """Healthy while the child runs, the state in /dev/shm; unhealthy once the child is gone."""
    wait_until(lambda: healthy(container, entrypoint), 10, "health to answer 0")
    said = exec_in(container, entrypoint, "health").stdout
    assert "child pid" in said, said
    state = exec_in(container, "cat", f"/dev/shm/entrypoint-state.{uid}.json")
    assert state.returncode == 0, state.stderr
    assert '"state": "running"' in state.stdout
    # Kill the child from inside (same uid, no capability needed): the
    # supervisor sees it exit and backs off (BACKOFF) before the restart.
    killed = exec_in(container, "sh", "-c", f"kill -KILL {child_pid(container)}")
    assert killed.returncode == 0, killed.stderr
    wait_until(lambda: not healthy(container, entrypoint), 10, "health to answer 1")
    wait_until(lambda: healthy(container, entrypoint), 30, "health to answer 0 again")
    # The new child says it is up (its stop handler in place) before the test stops it.
    wait_until(lambda: logs(container).count(started) >= 2, 30, f"a second {started!r}")


@pytest.fixture
def redis_on(docker: Docker) -> tuple[str, str]:
    network = docker.network()
    return network, docker.redis(network)


@pytest.mark.parametrize("user", USERS)
def test_web_mode_read_only_non_root(
    image: str, docker: Docker, redis_on: tuple[str, str], user: str
) -> None:
    network, redis = redis_on
    web = docker.start(
        "--network", network, *LOCKED, "--user", user,
        "-e", f"QUEUE_URL=redis://{redis}:6379/0",
        image, name="web",
    )  # fmt: skip
    wait_until(lambda: healthy(web), 30, "health (ENTRYPOINT_HEALTH_URL) to answer 0")
    assert pid1_argv(web) == ["python", "-m", "demo.web"]
    assert "answered" in exec_in(web, "entrypoint", "health").stdout
    run("docker", "stop", "-t", "10", web, timeout=60)
    assert inspect(web, "{{.State.ExitCode}}") == "0", logs(web)[-2000:]


@pytest.mark.parametrize("user", USERS)
def test_worker_mode_read_only_non_root(
    image: str, docker: Docker, redis_on: tuple[str, str], user: str
) -> None:
    network, redis = redis_on
    worker = docker.start(
        "--network", network, *LOCKED, "--user", user,
        "-e", "MODE=worker", "-e", f"QUEUE_URL=redis://{redis}:6379/0", *BACKOFF,
        image, "python", "-m", "demo.worker", name="worker",
    )  # fmt: skip
    wait_until(lambda: "worker_started" in logs(worker), 30, "the demo worker to start")
    assert_truthful_health(worker, "entrypoint", user.split(":", maxsplit=1)[0], "worker_started")
    run("docker", "stop", "-t", "30", worker, timeout=60)
    assert inspect(worker, "{{.State.ExitCode}}") == "0", logs(worker)[-2000:]


@pytest.mark.parametrize("user", USERS)
def test_scheduler_mode_read_only_non_root(
    image: str, docker: Docker, redis_on: tuple[str, str], user: str
) -> None:
    network, redis = redis_on
    scheduler = docker.start(
        "--network", network, *LOCKED, "--user", user,
        "-e", "MODE=scheduler", "-e", f"QUEUE_URL=redis://{redis}:6379/0",
        "-e", "DEMO_SCHEDULE_EVERY=1", *BACKOFF,
        image, "python", "-m", "demo.scheduler", name="scheduler",
    )  # fmt: skip
    wait_until(lambda: "leader_acquired" in logs(scheduler), 30, "the lease to be taken")
    wait_until(lambda: "tick_enqueued" in logs(scheduler), 30, "the scheduler to tick")
    assert_truthful_health(
        scheduler, "entrypoint", user.split(":", maxsplit=1)[0], "scheduler_started"
    )
    run("docker", "stop", "-t", "20", scheduler, timeout=60)
    assert inspect(scheduler, "{{.State.ExitCode}}") == "0", logs(scheduler)[-2000:]


def test_bundle_worker_read_only_non_root(docker: Docker) -> None:
    image = require_image(PHP_IMAGE)
    worker = docker.start(
        *LOCKED, "--user", "1000680000:0", "-e", "MODE=worker", "-e", "JOB_SECONDS=0.5", *BACKOFF,
        image, name="php",
    )  # fmt: skip
    wait_until(lambda: "job_started" in logs(worker), 30, "the PHP worker to start")
    assert_truthful_health(worker, "/opt/entrypoint/entrypoint", "1000680000", "worker_started")
    run("docker", "stop", "-t", "30", worker, timeout=60)
    assert inspect(worker, "{{.State.ExitCode}}") == "0", logs(worker)[-2000:]
