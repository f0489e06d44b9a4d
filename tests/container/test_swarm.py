"""docker-stack.yaml on a real single-node Swarm: scale-out, rolling updates, a frozen replica.

The module makes its own swarm (`docker swarm init --advertise-addr 127.0.0.1`)
on the engine .ci/docker-up started, deploys the stack, and leaves the swarm at
the end. The stack file is deployed as it is, except for what this machine and
a test's tempo need (see `tempo`): no published port (the routing mesh would
publish on every interface, and this kernel has no IPVS behind it anyway),
health checks every second, and a shorter worker grace.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.container.conftest import (
    ROOT,
    child_pid,
    events,
    exec_in,
    inspect,
    logs,
    run,
    wait_until,
)
from tests.servers import missing

pytestmark = pytest.mark.docker

STACK_FILE = ROOT / "docker-stack.yaml"
NODE_LABEL = "org.entrypoint.test-swarm"


def tempo(stack: dict[str, Any]) -> dict[str, Any]:
    """The stack file at a test's tempo, its rules kept (grace > ENTRYPOINT_STOP_TIMEOUT)."""
    services = stack["services"]
    services["web"].pop("ports")
    for name in ("web", "worker", "scheduler"):
        services[name]["healthcheck"]["interval"] = "1s"
    worker = services["worker"]
    worker["environment"]["ENTRYPOINT_STOP_TIMEOUT"] = "8"
    worker["stop_grace_period"] = "12s"
    # A killed child leaves its supervisor in backoff (health 1) for a minute:
    # how the frozen-replica test makes today's `health` fail (see there).
    worker["environment"]["ENTRYPOINT_BACKOFF_INITIAL"] = "60"
    services["scheduler"]["environment"]["DEMO_SCHEDULE_EVERY"] = "1"
    return stack


def swarm_state() -> str:
    return run("docker", "info", "--format", "{{.Swarm.LocalNodeState}}").stdout.strip()


def node_id() -> str:
    return run("docker", "info", "--format", "{{.Swarm.NodeID}}").stdout.strip()


@contextlib.contextmanager
def own_swarm() -> Iterator[None]:
    """A swarm of this machine's engine alone, made here, left at the end."""
    if swarm_state() == "active":
        labels = run("docker", "node", "inspect", node_id(), "--format", "{{json .Spec.Labels}}")
        if NODE_LABEL not in labels.stdout:
            missing("this engine is already part of a swarm that these tests did not make")
        # A swarm a killed run of this module left behind.
        run("docker", "swarm", "leave", "--force", timeout=60)
    init = run("docker", "swarm", "init", "--advertise-addr", "127.0.0.1", check=False)
    if init.returncode != 0:
        missing(f"docker swarm init failed: {init.stderr.strip()}")
    try:
        run("docker", "node", "update", "--label-add", f"{NODE_LABEL}=1", node_id())
        yield
    finally:
        run("docker", "swarm", "leave", "--force", check=False, timeout=120)


@dataclass(frozen=True)
class Stack:
    name: str

    def service(self, short: str) -> str:
        return f"{self.name}_{short}"

    def containers(self, short: str, *, all_states: bool = False) -> list[str]:
        """The service's containers on this node, running ones unless `all_states`."""
        args = ["docker", "ps", "-q", "--no-trunc"]
        args += ["-f", f"label=com.docker.swarm.service.name={self.service(short)}"]
        if all_states:
            args.append("-a")
        return run(*args).stdout.split()

    def healthy(self, short: str) -> list[str]:
        found = []
        for container in self.containers(short):
            with contextlib.suppress(AssertionError):
                if inspect(container, "{{.State.Health.Status}}") == "healthy":
                    found.append(container)
        return found

    def wait_healthy(self, short: str, count: int, timeout: float = 90) -> list[str]:
        def counted() -> list[str] | None:
            found = self.healthy(short)
            return found if len(found) == count else None

        return wait_until(counted, timeout, f"{count} healthy {short} replicas")

    def update(self, short: str) -> None:
        """A rolling update of every replica (`--force`), returning once Swarm says it converged."""
        run(
            "docker", "service", "update", "--force", "--detach=false", "--quiet",
            self.service(short), timeout=300,
        )  # fmt: skip

    def demo(self, *argv: str) -> str:
        """`python -m demo ARGV` in a web container (the demo's queue from the command line)."""
        (web, *_) = self.containers("web")
        proc = exec_in(web, "python", "-m", "demo", *argv)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    proc = subprocess.run(["docker", "info"], capture_output=True, timeout=30, check=False)
    if proc.returncode != 0:
        missing("no Docker engine answers `docker info` (bash .ci/docker-up starts one)")
    image = os.environ.get("ENTRYPOINT_IMAGE", "entrypoint-demo:ci")
    if run("docker", "image", "inspect", image, check=False).returncode != 0:
        missing(f"the image {image} is not built (bash .ci/docker-up builds it)")
    path: Path = tmp_path_factory.mktemp("swarm") / "docker-stack.yaml"
    path.write_text(yaml.safe_dump(tempo(yaml.safe_load(STACK_FILE.read_text()))))
    made = Stack(f"ept{uuid.uuid4().hex[:6]}")
    env = {**os.environ, "ENTRYPOINT_IMAGE": image}
    with own_swarm():
        try:
            # never: the images are this node's own; no registry is asked.
            run(
                "docker", "stack", "deploy", "--resolve-image", "never",
                "-c", str(path), made.name, env=env, timeout=120,
            )  # fmt: skip
            made.wait_healthy("web", 1)
            made.wait_healthy("worker", 3)
            made.wait_healthy("scheduler", 2)
            yield made
        finally:
            for container in made.containers("worker", all_states=True):
                # A container the frozen-replica test stopped, should it still be there.
                with contextlib.suppress(AssertionError, ProcessLookupError, ValueError):
                    os.kill(int(inspect(container, "{{.State.Pid}}")), signal.SIGCONT)
            run("docker", "stack", "rm", made.name, check=False, timeout=120)
            with contextlib.suppress(AssertionError):
                wait_until(
                    lambda: (
                        not run(
                            "docker",
                            "ps",
                            "-aq",
                            "-f",
                            f"label=com.docker.stack.namespace={made.name}",
                        ).stdout.split()
                    ),
                    60,
                    "the stack's containers to go",
                )


def test_scale_out_and_a_rolling_update_lose_no_job_and_cut_none(stack: Stack) -> None:
    run("docker", "service", "scale", "--detach", f"{stack.service('worker')}=5")
    before = set(stack.wait_healthy("worker", 5))

    jobs = stack.demo("enqueue", "--count", "30", "--seconds", "2").split()
    assert len(jobs) == 30
    # Stop-first, one at a time, each new replica healthy before the next goes:
    # every old worker gets TERM while the queue is full, finishes its job, exits 0.
    stack.update("worker")
    after = set(stack.wait_healthy("worker", 5))
    assert not after & before

    def finished() -> dict[str, dict[str, Any]] | None:
        listed = {j["id"]: j for j in json.loads(stack.demo("jobs", "--json", "--limit", "1000"))}
        done = {i: listed[i] for i in jobs if listed.get(i, {}).get("status") == "finished"}
        return done if len(done) == len(jobs) else None

    done = wait_until(finished, 120, "the 30 jobs to finish")
    assert all(job["runs"] == 1 for job in done.values()), done
    assert len({str(job["worker"]).split("/")[0] for job in done.values()}) > 1
    in_flight = 0
    for old in before:
        text = logs(old)
        assert inspect(old, "{{.State.ExitCode}}") == "0", text[-3000:]
        assert "stop_finished" in text
        assert "stop_escalated" not in text
        # RQ's warm shutdown, then the job it was running reported done.
        stop_at = text.find("warm shut down requested")
        in_flight += stop_at >= 0 and "Job OK" in text[stop_at:]
    assert in_flight >= 1, "no worker was stopped while it ran a job: the test proved nothing"


def _intervals(container: str) -> list[tuple[datetime, datetime]]:
    """When this scheduler container ran a child: (child_started, child_exited or now)."""
    spans: list[tuple[datetime, datetime]] = []
    started: datetime | None = None
    for event in events(container):
        stamp = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
        if event["event"] == "child_started":
            started = stamp
        elif event["event"] == "child_exited" and started is not None:
            spans.append((started, stamp))
            started = None
    if started is not None:
        spans.append((started, datetime.now(tz=started.tzinfo)))
    return spans


def test_scheduler_runs_one_child_at_a_time_across_a_rolling_update(stack: Stack) -> None:
    first = stack.wait_healthy("scheduler", 2)
    wait_until(
        lambda: sum(bool(_intervals(c)) for c in first) == 1,
        30,
        "one scheduler replica to lead (the other stands by)",
    )
    stack.update("scheduler")
    stack.wait_healthy("scheduler", 2)
    wait_until(
        lambda: sum("leader_acquired" in logs(c) for c in stack.containers("scheduler")) == 1,
        30,
        "a leader among the new scheduler replicas",
    )
    spans = sorted(
        (span, container)
        for container in stack.containers("scheduler", all_states=True)
        for span in _intervals(container)
    )
    assert len({container for _, container in spans}) >= 2, "the lead never moved"
    for (earlier, a), (later, b) in itertools.pairwise(spans):
        assert later[0] >= earlier[1], f"two scheduler children at once: {a[:12]} and {b[:12]}"
    ticks = [line for c in stack.containers("scheduler", all_states=True) for line in
             logs(c).splitlines() if "tick_enqueued" in line]  # fmt: skip
    assert ticks


def test_a_frozen_worker_replica_is_marked_unhealthy_and_replaced(stack: Stack) -> None:
    """Frozen: today's `health` reads the supervisor's state and the child's pid, so
    freeze the replica in a state it reports: the child killed (the supervisor backs off
    for a minute, ENTRYPOINT_BACKOFF_INITIAL), then the supervisor itself stopped
    (SIGSTOP): it can neither restart the child nor take the engine's TERM. Once
    heartbeat liveness is in the core, SIGSTOP of the child alone will do."""
    workers = stack.wait_healthy("worker", 5)
    victim = workers[0]
    killed = exec_in(victim, "sh", "-c", f"kill -KILL {child_pid(victim)}")
    assert killed.returncode == 0, killed.stderr
    wait_until(
        lambda: "backoff" in exec_in(victim, "entrypoint", "health").stdout,
        10,
        "health to report the backoff",
    )
    started = time.monotonic()
    os.kill(int(inspect(victim, "{{.State.Pid}}")), signal.SIGSTOP)
    wait_until(
        lambda: inspect(victim, "{{.State.Health.Status}}") == "unhealthy",
        30,
        "the engine to mark the frozen replica unhealthy",
    )
    wait_until(
        lambda: inspect(victim, "{{.State.Running}}") == "false",
        60,
        "Swarm to take the unhealthy replica down",
    )

    def five_without_the_victim() -> list[str] | None:
        now = stack.healthy("worker")
        return now if len(now) == 5 and victim not in now else None

    wait_until(five_without_the_victim, 60, "Swarm to replace the replica")
    errors = run(
        "docker", "service", "ps", "--no-trunc", "--format", "{{.Error}}", stack.service("worker")
    ).stdout  # fmt: skip
    assert "unhealthy" in errors, errors
    assert time.monotonic() - started < 90
