"""The compose stack under a real engine: scale-out, exactly once, a killed worker replaced."""

from __future__ import annotations

import json
import os
import re
import shlex
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from tests.container.conftest import (
    ROOT,
    compose_cli,
    http_json,
    inspect,
    logs,
    run,
    wait_until,
)
from tests.docs_helpers import DOCS, shell_commands

pytestmark = pytest.mark.docker


@dataclass(frozen=True)
class Stack:
    compose: tuple[str, ...]
    env: dict[str, str]

    def __call__(self, *args: str, timeout: float = 120, check: bool = True) -> str:
        """Compose's output, stdout and stderr (where it reports progress)."""
        proc = run(*self.compose, *args, timeout=timeout, check=check, env=self.env)
        return proc.stdout + proc.stderr

    @property
    def web(self) -> str:
        """The web app's base URL: the engine picked its loopback port (WEB_PORT empty)."""
        published = run(*self.compose, "port", "web", "8000", env=self.env).stdout.split()
        assert published, "web publishes no port"
        assert published[0].startswith("127.0.0.1:"), published
        return f"http://{published[0]}"

    def containers(self, service: str) -> list[str]:
        return sorted(run(*self.compose, "ps", "-q", service, env=self.env).stdout.split())

    def jobs(self) -> dict[str, dict[str, object]]:
        return {job["id"]: job for job in http_json(f"{self.web}/jobs?limit=1000")}

    def enqueue(self, count: int, seconds: float) -> list[str]:
        created = http_json(f"{self.web}/jobs", {"count": count, "seconds": seconds}, timeout=10)
        return [job["id"] for job in created]

    def all_finished(self, ids: list[str]) -> dict[str, dict[str, object]] | None:
        jobs = self.jobs()
        if all(jobs.get(i, {}).get("status") == "finished" for i in ids):
            return {i: jobs[i] for i in ids}
        return None


@pytest.fixture
def make_stack(image: str) -> Iterator[Callable[..., Stack]]:
    """Stacks with a project name of their own, ports the engine picks, `down -v` at the end.

    The engine picks each port when it starts the container: no port chosen
    here can be taken by someone else in between."""
    made: list[Stack] = []

    def make(*profiles: str, **env: str) -> Stack:
        full_env = {
            **os.environ,
            "ENTRYPOINT_IMAGE": image,
            "WEB_PORT": "",
            "REDIS_PORT": "",
            "POSTGRES_PORT": "",
            **env,
        }
        compose = [*compose_cli(), "-p", f"epd{uuid.uuid4().hex[:8]}"]
        compose += ["-f", str(ROOT / "docker-compose.yaml")]
        for profile in profiles:
            compose += ["--profile", profile]
        stack = Stack(tuple(compose), full_env)
        made.append(stack)
        return stack

    try:
        yield make
    finally:
        for stack in made:
            stack("down", "-v", "--remove-orphans", "-t", "10", timeout=120, check=False)


def test_scaled_workers_process_every_job_once_and_a_killed_worker_is_replaced(
    make_stack: Callable[..., Stack],
) -> None:
    # The README's two commands: up --build (offline here: the wheelhouse), then
    # --scale. The image is built once, and scaling out only adds replicas.
    stack = make_stack("app", PIP_NO_INDEX="1")
    built = stack("up", "-d", "--build", "--wait", "--wait-timeout", "90", timeout=600)
    first = {service: stack.containers(service) for service in ("web", "worker", "scheduler")}
    assert len(first["worker"]) == 3  # deploy.replicas
    stack("up", "-d", "--wait", "--wait-timeout", "90", "--scale", "worker=5")
    workers = stack.containers("worker")
    assert len(workers) == 5
    assert set(first["worker"]) < set(workers), "scaling out recreated worker containers"
    assert stack.containers("web") == first["web"]
    assert stack.containers("scheduler") == first["scheduler"]
    # The engine's own line (pip's "Successfully built <project>" lines are not builds).
    assert len(re.findall(r"^Successfully built [0-9a-f]{12}\s*$", built, re.M)) <= 1, built
    hostnames = {inspect(c, "{{.Config.Hostname}}"): c for c in workers}

    ids = stack.enqueue(30, 0.3)
    assert len(set(ids)) == 30
    done = wait_until(lambda: stack.all_finished(ids), 60, "30 jobs to finish")
    assert all(job["runs"] == 1 for job in done.values()), done
    by = {str(job["worker"]).split("/")[0] for job in done.values()}
    assert by <= set(hostnames), by
    assert len(by) > 1, f"all 30 jobs went to one replica: {by}"

    # A crash, as the kernel's OOM killer would do it: SIGKILL to the container's
    # PID 1 (the entrypoint) from outside; the restart policy brings it back.
    # (`docker kill` and `docker compose kill` mark a container as stopped by
    # hand, and no restart policy restarts those.) Jobs enqueued while the
    # replica is down and restarting are all processed, once each.
    victim = workers[0]
    pid = int(inspect(victim, "{{.State.Pid}}"))
    assert pid > 1
    os.kill(pid, 9)
    wait_until(
        lambda: inspect(victim, "{{.RestartCount}} {{.State.Pid}}") != f"0 {pid}",
        30,
        "the engine to see the worker die",
    )
    more = stack.enqueue(15, 0.3)
    wait_until(
        lambda: inspect(victim, "{{.RestartCount}} {{.State.Status}}") == "1 running",
        60,
        "the killed worker to be restarted",
    )
    wait_until(
        lambda: inspect(victim, "{{.State.Health.Status}}") == "healthy",
        60,
        "the restarted worker to be healthy",
    )
    assert sorted(stack.containers("worker")) == sorted(workers)

    done = wait_until(lambda: stack.all_finished(ids + more), 60, "all 45 jobs to finish")
    lost = [i for i in ids + more if i not in done]
    assert not lost
    assert all(job["runs"] == 1 for job in done.values()), done
    assert "worker_started" in logs(victim)


def test_database_queue_variant_on_postgres_with_two_schedulers(
    make_stack: Callable[..., Stack],
) -> None:
    stack = make_stack(
        "app",
        "postgres",
        QUEUE_URL="postgresql://demo:demo-secret@postgres:5432/demo",
        DEMO_SCHEDULE_EVERY="1",
    )
    # No --scale for the workers: deploy.replicas (3) decides.
    stack("up", "-d", "--no-build", "--wait", "--wait-timeout", "90", "--scale", "scheduler=2")
    assert len(stack.containers("worker")) == 3
    assert http_json(f"{stack.web}/healthz") == {"status": "ok", "queue": "postgresql"}

    ids = stack.enqueue(20, 0.2)
    done = wait_until(lambda: stack.all_finished(ids), 60, "20 jobs to finish")
    assert all(job["runs"] == 1 for job in done.values()), done
    assert len({str(job["worker"]).split("/")[0] for job in done.values()}) > 1

    # Two scheduler replicas, both healthy: one holds the lease (an advisory
    # lock in the same PostgreSQL) and ticks, the other stands by.
    schedulers = stack.containers("scheduler")
    assert len(schedulers) == 2
    assert all(inspect(c, "{{.State.Health.Status}}") == "healthy" for c in schedulers)
    ticking = [c for c in schedulers if "tick_enqueued" in logs(c)]
    assert len(ticking) == 1, [logs(c)[-2000:] for c in schedulers]
    assert sum("leader_acquired" in logs(c) for c in schedulers) == 1


def test_database_queue_variant_takes_its_password_from_the_compose_secret(
    make_stack: Callable[..., Stack],
) -> None:
    # The documented variant: no URL, no password in any variable; PostgreSQL
    # and the app read the one secret file (POSTGRES_PASSWORD_FILE, DB_PASSWORD_FILE).
    stack = make_stack("app", "postgres", QUEUE_CONNECTION="database", DEMO_SCHEDULE_EVERY="1")
    stack("up", "-d", "--no-build", "--wait", "--wait-timeout", "90")
    assert http_json(f"{stack.web}/healthz") == {"status": "ok", "queue": "postgresql"}
    ids = stack.enqueue(10, 0.1)
    done = wait_until(lambda: stack.all_finished(ids), 60, "10 jobs to finish")
    assert all(job["runs"] == 1 for job in done.values()), done

    (worker, *_) = stack.containers("worker")
    (scheduler,) = stack.containers("scheduler")
    for container in (*stack.containers("web"), worker, scheduler):
        env = json.loads(inspect(container, "{{json .Config.Env}}"))
        assert "DB_PASSWORD_FILE=/run/secrets/postgres-password" in env
        assert not [v for v in env if v.startswith(("DB_PASSWORD=", "QUEUE_URL=postgres"))], env
    # The entrypoint logged in with the secret (not only the handshake) ...
    explained = json.loads(run("docker", "exec", worker, "entrypoint", "explain", "--json").stdout)
    (queue,) = explained["dependencies"]
    assert (queue["source"], queue["depth"]) == ("QUEUE_CONNECTION", "authenticated"), queue
    assert "demo:***@postgres" in queue["url"]
    # ... and the scheduler holds its lease in PostgreSQL with it.
    assert "leader_acquired" in logs(scheduler)
    assert "tick_enqueued" in logs(scheduler)


# --- the docs' commands that look at a container's plan --------------------------------


def documented_docker_commands() -> list[tuple[str, list[str]]]:
    """`docker compose ... --entrypoint entrypoint worker explain|check` and `docker run` ones."""
    found = []
    for path in DOCS:
        for number, words in shell_commands(path):
            if words[:1] == ["docker"] and "--entrypoint" in words and words[-1] in PLAN_LOOKS:
                found.append((f"{path.relative_to(ROOT)}:{number}", words))
    return found


PLAN_LOOKS = ("explain", "check")


def test_the_docs_commands_that_look_at_a_containers_plan_work_as_written(
    make_stack: Callable[..., Stack], image: str
) -> None:
    commands = documented_docker_commands()
    assert len(commands) >= 4, commands  # the extraction itself can fail
    stack = make_stack()
    stack("up", "-d", "--wait", "--wait-timeout", "60", "redis")  # what `check` probes
    for where, words in commands:
        if words[1] == "compose":
            argv = [*stack.compose, *words[2:]]  # this test's project, the same file
        else:
            argv = [image if word == "entrypoint-demo" else word for word in words]
            assert image in argv, f"{where}: which image? {words}"
        proc = run(*argv, timeout=120, check=False, env=stack.env)
        output = proc.stdout + proc.stderr
        shown = shlex.join(words)
        assert proc.returncode == 0, f"{where}: {shown} exited {proc.returncode}\n{output}"
        if words[-1] == "explain":
            assert "python -m demo.worker" in output, f"{where}: {output}"
