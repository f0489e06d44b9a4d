"""The runner: build the peers once, run each measure in turn, print one table, write the JSON.

    python benchmarks/run.py [--quick] [--json FILE] [--plot FILE] [--only A,B] [--source DIR]

The measures, in the order they run (each is a module of this package, see
harness.py for the shape):

    web      1. start to exec in web mode, bare and image environment (web.py)
    signal   2. signal forwarding latency (signals.py)
    idle     3. idle cost, features off and on; 6. health, health --ready, check (idle.py, cli.py)
    reap     4. reaping 2,000 orphans as PID 1 (reap.py)
    restart  5. restart after a clean exit (restart.py)
    worker   7. worker start to child_started, with a Redis dependency (worker_start.py)
    memory   8. the cost of one ENTRYPOINT_MAX_RSS sample (memory_sample.py)
    metrics  9. metrics: import, RSS, scrape (metrics.py)

Optional measures run when their module exists and its prerequisites are met
(`OPTIONAL`). Such a module, e.g. `benchmarks/bundle.py`, stands alone and
provides:

    run(**context) -> dict                 the figures (JSON-able); a "results" key
                                           holding {row label: {column: value}} is
                                           printed as a table when there is no render
    prerequisites(**context) -> str | None optional: why it cannot run now, or None
    render(result) -> str                  optional: its part of the printed report
    budgets(result) -> list[Budget]        optional: benchmarks.table.Budget values
                                           (or dicts with name, target, measured, met)

Each function is called with the keywords of `context` it names: `quick`,
`sizes`, `tmp` (the run's temporary directory), `project` (the tree measured),
`python` and `entrypoint` (the throwaway venv's interpreter and console
script), `peers`, `procs`. Its result is stored under its name in the JSON; a
measure that cannot run is listed in `meta.skipped`, never an error of the run.

Every figure is measured against the peers in the same run (round-robin, or all
running at once), budgets are printed as met or missed next to each figure, and
nothing is asserted. Every process started is stopped in a `finally`.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from types import ModuleType
from typing import Any

from benchmarks import (
    idle,
    memory_sample,
    metrics,
    policies,
    reap,
    restart,
    signals,
    web,
    worker_start,
)
from benchmarks.common import FULL, QUICK, REDIS_URL, ROOT, Processes, Sizes, log, redis_up
from benchmarks.harness import Context, Measure, Result, Section
from benchmarks.peers import find_peers
from benchmarks.table import Budget, budget_lines, table

MEASURES: tuple[Measure, ...] = (
    web.MEASURE,
    signals.MEASURE,
    idle.MEASURE,
    reap.MEASURE,
    restart.MEASURE,
    worker_start.MEASURE,
    memory_sample.MEASURE,
    metrics.MEASURE,
)
OPTIONAL = ("bundle",)  # benchmarks/<name>.py, run when it exists and can run here
# The order of the printed report (the idle measure also fills "cli").
REPORT_ORDER = (
    "web",
    "signal",
    "idle",
    "reap",
    "restart",
    "cli",
    "worker_start",
    "memory_sample",
    "metrics",
)
NAMES = tuple(m.name for m in MEASURES) + OPTIONAL


# -- optional measures ---------------------------------------------------------------------


def context_kwargs(ctx: Context) -> dict[str, Any]:
    return {
        "quick": ctx.quick,
        "sizes": ctx.sizes,
        "tmp": ctx.tmp,
        "project": ctx.project,
        "python": ctx.peers.python,
        "entrypoint": ctx.peers.entrypoint,
        "peers": ctx.peers,
        "procs": ctx.procs,
    }


def call_with(function: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    """Call `function` with the keywords of `kwargs` it names (all of them for **kwargs)."""
    parameters = inspect.signature(function).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return function(**kwargs)
    return function(**{p.name: kwargs[p.name] for p in parameters if p.name in kwargs})


def as_budgets(found: Sequence[Budget | dict[str, Any]]) -> list[Budget]:
    return [b if isinstance(b, Budget) else Budget(**b) for b in found]


def generic_render(name: str) -> Callable[[Result], str]:
    def render(r: Result) -> str:
        rows = r.get("results")
        if not isinstance(rows, dict) or not rows:
            return f"{name}: {json.dumps(r)[:500]}"
        keys = list(dict.fromkeys(k for row in rows.values() if row for k in row))
        return table(name, [(key, key) for key in keys], rows)

    return render


def optional_measure(name: str) -> tuple[Measure | None, str | None]:
    """The measure of benchmarks/<name>.py, or (None, why it is not there)."""
    module_name = f"benchmarks.{name}"
    if importlib.util.find_spec(module_name) is None:
        return None, f"benchmarks/{name}.py is not there"
    module: ModuleType = importlib.import_module(module_name)
    if not callable(getattr(module, "run", None)):
        return None, f"benchmarks/{name}.py has no run()"

    def run(ctx: Context) -> dict[str, Result]:
        kwargs = context_kwargs(ctx)
        prerequisites = getattr(module, "prerequisites", None)
        if prerequisites is not None and (reason := call_with(prerequisites, kwargs)):
            raise Skipped(str(reason))
        result = call_with(module.run, kwargs)
        if not isinstance(result, dict):
            raise TypeError(f"benchmarks/{name}.py: run() returned {type(result).__name__}")
        return {name: result}

    render = getattr(module, "render", None) or generic_render(name)
    module_budgets = getattr(module, "budgets", None)

    def budgets(r: Result) -> list[Budget]:
        return as_budgets(module_budgets(r)) if module_budgets else []

    section = Section(name, render, budgets, {"results": {}})
    return Measure(name, f"{name} (optional)", run, (section,)), None


class Skipped(Exception):
    """An optional measure whose prerequisites are missing here."""


# -- the run -------------------------------------------------------------------------------


def run(
    sizes: Sizes,
    *,
    quick: bool,
    plot_path: Path | None,
    project: Path = ROOT,
    only: Sequence[str] = NAMES,
) -> dict[str, Any]:
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="entrypoint-bench-"))
    procs = Processes(tmp)
    measures = [m for m in MEASURES if m.name in only]
    skipped: list[str] = []
    for name in OPTIONAL:
        if name in only:
            measure, why = optional_measure(name)
            if measure is None:
                skipped.append(f"{name}: {why}")
            else:
                measures.append(measure)
    sections = [section for m in (*MEASURES, *measures) for section in m.sections]
    results: dict[str, Any] = {s.key: json.loads(json.dumps(s.empty)) for s in sections}
    ran: set[str] = set()  # the sections that were measured: only theirs are budgets
    try:
        peers = find_peers(tmp, project, plot=plot_path is not None)
        if not redis_up():
            peers.missing.append(f"Redis: nothing answers on {REDIS_URL} (check fails with 69)")
        ctx = Context(peers, sizes, tmp, procs, project, quick)
        for number, measure in enumerate(measures, 1):
            log(f"{number}/{len(measures)} {measure.title}")
            try:
                produced = measure.run(ctx)
                results.update(produced)
                ran.update(produced)
            except Skipped as exc:
                skipped.append(f"{measure.name}: {exc}")
            except Exception as exc:
                if measure.name not in OPTIONAL:
                    raise
                skipped.append(f"{measure.name}: failed: {exc}")
            finally:
                procs.stop_all()
        results["restart_policies"] = policies.policy_delays()
        if plot_path is not None:
            if policies.plot(results["restart_policies"], plot_path):
                log(f"wrote {plot_path}")
            else:
                peers.missing.append("matplotlib: not importable, no picture written")
        results["meta"] = {
            "quick": quick,
            "cpus": os.cpu_count(),
            "kernel": f"{platform.system()} {platform.release()}",
            "versions": peers.versions,
            "pip": peers.pip,
            "console_script_imports_re": "import re" in peers.console_script,
            "missing": peers.missing,
            "skipped": skipped,
            "sizes": asdict(sizes),
            "sections": [m.name for m in measures],
            "duration_s": round(time.monotonic() - started, 1),
        }
        results["budgets"] = measured_budgets(sections, results, ran)
        return results
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


def measured_budgets(
    sections: Sequence[Section], results: dict[str, Any], ran: set[str]
) -> list[dict[str, Any]]:
    """The budgets of the sections that were measured; a skipped one has none to count."""
    return [
        asdict(b)
        for section in ordered(sections)
        if section.key in ran
        for b in section.budgets(results[section.key])
    ]


def ordered(sections: Sequence[Section]) -> list[Section]:
    unique = {s.key: s for s in sections}
    rank = {key: index for index, key in enumerate(REPORT_ORDER)}
    return sorted(unique.values(), key=lambda s: rank.get(s.key, len(rank)))


def all_sections(results: dict[str, Any]) -> list[Section]:
    sections = [s for m in MEASURES for s in m.sections]
    for name in OPTIONAL:
        if name in results:
            measure, _ = optional_measure(name)
            if measure is not None:
                sections.extend(measure.sections)
    return ordered(sections)


def render(results: dict[str, Any]) -> str:
    meta = results["meta"]
    kind = "quick" if meta["quick"] else "full"
    parts = [
        (
            f"entrypoint benchmarks: {meta['cpus']} CPUs, {meta['kernel']}, "
            f"{meta['versions'].get('python', '')}, {meta['pip']}, {kind} run"
        )
    ]
    found: list[Budget] = []
    not_run = {entry.split(":")[0] for entry in meta.get("skipped", [])}
    for section in all_sections(results):
        result = results[section.key]
        if section.key in OPTIONAL and section.key in not_run:
            continue
        text = section.render(result)
        judged = section.budgets(result)
        if judged:
            text += "\n" + budget_lines(judged)
        found.extend(judged)
        parts.append(text)
    missed = [b.name for b in found if b.met is False]
    summary = f"budgets: {sum(b.met is True for b in found)} met, {len(missed)} missed"
    if missed:
        summary += " (" + "; ".join(missed) + ")"
    unmeasured = [b.name for b in found if b.met is None]
    if unmeasured:
        summary += f", {len(unmeasured)} not measured (" + "; ".join(unmeasured) + ")"
    parts.append(summary)
    if meta["missing"]:
        parts.append("missing: " + "; ".join(meta["missing"]))
    if meta.get("skipped"):
        parts.append("skipped: " + "; ".join(meta["skipped"]))
    return "\n\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="benchmarks/run.py",
        description="entrypoint side by side with tini, dumb-init, supervisord and honcho",
    )
    parser.add_argument("--quick", action="store_true", help="few samples: a smoke test")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the results as JSON")
    parser.add_argument("--plot", type=Path, metavar="FILE", help="write the restart-delay PNG")
    parser.add_argument(
        "--only",
        default=",".join(NAMES),
        help=f"comma-separated measures to run, of {','.join(NAMES)} (default: all)",
    )
    parser.add_argument(
        "--source",
        type=Path,
        default=ROOT,
        metavar="DIR",
        help="the project tree to install and measure (default: this repository)",
    )
    args = parser.parse_args(argv)
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    if unknown := sorted(set(only) - set(NAMES)):
        parser.error(f"unknown measure(s): {', '.join(unknown)}")
    try:
        results = run(
            QUICK if args.quick else FULL,
            quick=args.quick,
            plot_path=args.plot,
            project=args.source.resolve(),
            only=only,
        )
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        print(f"benchmarks/run.py: error: {exc}", file=sys.stderr)
        return 1
    print(render(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        log(f"wrote {args.json}")
    return 0
