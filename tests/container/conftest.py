"""Helpers for the image and compose tests: a real Docker engine, waited on, never slept on.

`.ci/docker-up` starts the engine and builds the image (ENTRYPOINT_IMAGE,
default entrypoint-demo:ci); without them these tests skip, or fail under CI=true.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.servers import missing

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "docker" / "demo"
IMAGE = os.environ.get("ENTRYPOINT_IMAGE", "entrypoint-demo:ci")
T = TypeVar("T")


def tool(name: str) -> str:
    """A binary from the venv running the tests (Compose, hadolint, ...) or from PATH."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if found is None:
        missing(f"{name} is not installed (bash .ci/docker-up installs it)")
    assert found is not None
    return found


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
