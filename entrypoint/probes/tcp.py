"""TCP: the port accepts a connection. Nothing more is said on it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from entrypoint.plan.urls import Dependency
    from entrypoint.probes._net import Attempt


def probe(dep: Dependency, attempt: Attempt) -> str:
    assert dep.port is not None
    attempt.connect(dep.host, dep.port)
    return "port open"
