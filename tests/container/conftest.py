"""Helpers for the image and compose tests: a real Docker engine, waited on, never slept on.

`.ci/docker-up` starts the engine and builds the images (ENTRYPOINT_IMAGE,
default entrypoint-demo:ci; the bundle and the PHP and Node examples); without
them these tests skip, or fail under CI=true.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.servers import missing

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "docker" / "demo"
IMAGE = os.environ.get("ENTRYPOINT_IMAGE", "entrypoint-demo:ci")
BUNDLE_IMAGE = os.environ.get("ENTRYPOINT_BUNDLE_IMAGE", "entrypoint-bundle:ci")
PHP_IMAGE = "entrypoint-php-example:ci"
NODE_IMAGE = "entrypoint-node-example:ci"
REDIS_IMAGE = "redis:7-alpine"
T = TypeVar("T")


def tool(name: str) -> str:
    """A binary from the venv running the tests (Compose, hadolint, ...) or from PATH."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if found is None:
        missing(f"{name} is not installed (bash .ci/docker-up installs it)")
    assert found is not None
    return found


def compose_cli() -> list[str]:
    """`docker compose`, as the README writes it: Compose as the CLI's plugin (docker-up)."""
    docker = shutil.which("docker")
    if docker is None:
        missing("the docker client is not installed (bash .ci/docker-up)")
    assert docker is not None
    proc = subprocess.run(
        [docker, "compose", "version"], capture_output=True, text=True, timeout=30, check=False
    )
    if proc.returncode != 0 or "Docker Compose" not in proc.stdout:
        missing(
            "`docker compose` is not a command here: Compose is not installed as the CLI's"
            f" plugin (bash .ci/docker-up does it): {(proc.stdout + proc.stderr).strip()[:200]}"
        )
    return [docker, "compose"]


def run(
    *args: str, timeout: float = 60, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        args, capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def wait_until(condition: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)


def http_json(url: str, body: object | None = None, timeout: float = 5) -> Any:
    """GET (or POST `body` as JSON) a URL on loopback and decode the JSON answer."""
    assert url.startswith("http://127.0.0.1:")
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    request = urllib.request.Request(url, data=data, headers=headers)  # noqa: S310 - loopback
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - loopback
        return json.loads(response.read())


def logs(container: str) -> str:
    proc = run("docker", "logs", container, check=False)
    return proc.stdout + proc.stderr


def inspect(container: str, template: str) -> str:
    return run("docker", "inspect", "-f", template, container).stdout.strip()


def pid1_argv(container: str) -> list[str]:
    raw = run("docker", "exec", container, "cat", "/proc/1/cmdline").stdout
    return raw.rstrip("\0").split("\0")


@pytest.fixture(scope="session")
def docker_engine() -> None:
    if shutil.which("docker") is None:
        missing("no Docker engine: the docker client is not installed (bash .ci/docker-up)")
    proc = subprocess.run(["docker", "info"], capture_output=True, timeout=30, check=False)
    if proc.returncode != 0:
        missing("no Docker engine answers `docker info` (bash .ci/docker-up starts one)")


@pytest.fixture(scope="session")
def image(docker_engine: None) -> str:
    proc = subprocess.run(
        ["docker", "image", "inspect", IMAGE], capture_output=True, timeout=30, check=False
    )
    if proc.returncode != 0:
        missing(f"the image {IMAGE} is not built (bash .ci/docker-up builds it)")
    return IMAGE


def require_image(tag: str) -> str:
    """`tag`, when the engine has it; else skip (fail under CI=true)."""
    proc = subprocess.run(
        ["docker", "image", "inspect", tag], capture_output=True, timeout=30, check=False
    )
    if proc.returncode != 0:
        missing(f"the image {tag} is not built (bash .ci/docker-up builds it)")
    return tag


@dataclass
class Docker:
    """Containers and networks of one test, with names of their own; all removed at the end."""

    prefix: str = field(default_factory=lambda: f"ept-{uuid.uuid4().hex[:8]}")
    containers: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)

    def network(self) -> str:
        name = f"{self.prefix}-net{len(self.networks)}"
        run("docker", "network", "create", name)
        self.networks.append(name)
        return name

    def start(self, *args: str, name: str = "") -> str:
        """`docker run -d --name ... ARGS`; returns the container's name."""
        name = f"{self.prefix}-{name or len(self.containers)}"
        self.containers.append(name)
        run("docker", "run", "-d", "--name", name, *args)
        return name

    def redis(self, network: str) -> str:
        """A Redis on `network`, answering PING; returns its host name there."""
        name = self.start("--network", network, "--health-interval=1s", REDIS_IMAGE, name="redis")
        wait_until(
            lambda: (
                run("docker", "exec", name, "redis-cli", "ping", check=False).stdout.strip()
                == "PONG"
            ),
            30,
            "Redis to answer PING",
        )
        return name

    def cleanup(self) -> None:
        if self.containers:
            run("docker", "rm", "-f", "-v", *self.containers, check=False, timeout=120)
        for network in self.networks:
            run("docker", "network", "rm", network, check=False, timeout=60)


@pytest.fixture
def docker(docker_engine: None) -> Iterator[Docker]:
    made = Docker()
    try:
        yield made
    finally:
        made.cleanup()


def exec_in(container: str, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """`docker exec CONTAINER ARGV`, as the container's own user; never raises on its status."""
    return run("docker", "exec", container, *argv, check=False, timeout=timeout)


def events(container: str) -> list[dict[str, Any]]:
    """The entrypoint's JSON log events in the container's output, in order."""
    found = []
    for line in logs(container).splitlines():
        if line.startswith("{"):
            try:
                data = json.loads(line)
            except ValueError:
                continue
            if isinstance(data, dict) and "event" in data:
                found.append(data)
    return found


def child_pid(container: str) -> int:
    """The pid (in the container) of the last child the entrypoint started."""
    started = [e for e in events(container) if e["event"] == "child_started"]
    assert started, logs(container)[-2000:]
    return int(started[-1]["pid"])
