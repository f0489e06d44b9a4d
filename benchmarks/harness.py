"""The shape of a measure, as the runner drives it.

A measure module exposes `MEASURE`, a `Measure`: its name (for `--only`), what
it says while it runs, a `run(ctx)` that returns one result per section it
fills (a JSON-able dict each), and those `Section`s, each of which renders its
result as a table and judges its budgets. The runner gives every measure the
same `Context`: the peers, the run's sizes, a temporary directory and the
register of long-running processes (all stopped at the end, whatever happens).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import Processes, Sizes
from benchmarks.peers import Peers
from benchmarks.table import Budget

Result = dict[str, Any]


@dataclass(frozen=True)
class Context:
    peers: Peers
    sizes: Sizes
    tmp: Path
    procs: Processes
    project: Path
    quick: bool


def no_budgets(result: Result) -> list[Budget]:
    del result
    return []


@dataclass(frozen=True)
class Section:
    """One table of the report, and the key of its result in the JSON."""

    key: str
    render: Callable[[Result], str]
    budgets: Callable[[Result], list[Budget]] = no_budgets
    empty: Result = field(default_factory=lambda: {"results": {}})  # when it did not run


@dataclass(frozen=True)
class Measure:
    name: str
    title: str
    run: Callable[[Context], dict[str, Result]]  # section key -> its result
    sections: tuple[Section, ...]
