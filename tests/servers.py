"""The servers this kind of machine runs on loopback, and the rule for their absence.

A test that needs one calls `require_server(name)`: absent, it skips with the
reason, except under CI=true, where an absent server fails the test, so that
nothing is silently untested.
"""

from __future__ import annotations

import os
import socket

import pytest

SERVERS = {
    "redis": ("127.0.0.1", 6379),
    "postgresql": ("127.0.0.1", 5432),
    "mariadb": ("127.0.0.1", 3306),
    "rabbitmq": ("127.0.0.1", 5672),
    "nats": ("127.0.0.1", 4222),
}


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def missing(reason: str) -> None:
    """Skip with `reason`, or fail under CI=true."""
    if in_ci():
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


def require_server(name: str) -> tuple[str, int]:
    host, port = SERVERS[name]
    try:
        with socket.create_connection((host, port), timeout=2):
            pass
    except OSError as exc:
        missing(f"{name} is not reachable on {host}:{port} ({exc})")
    return host, port
