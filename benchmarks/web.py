"""1. Start to exec in web mode, with a bare environment and with a real image's.

`entrypoint run -- true` (no MODE), `MODE=web entrypoint run -- true` with a bare
environment, and the same with what one image serving every role carries in its
ENV (the worker's and the scheduler's commands, a Laravel-style Redis queue, a
stop timeout, a state file), against `python3 -c pass`, `tini -- true`,
`dumb-init true` and `sh -c true`: each spawned with posix_spawn and waited for,
round-robin in rotating order, 3 warm-up rounds then the samples. Then
`python -X importtime` of the console script in both MODE=web cases: what the
entrypoint's own modules cost, and whether anything beyond the standard
library is imported on the exec path.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
from pathlib import Path
from typing import Any

from benchmarks import imports
from benchmarks.common import DUMB, EP, PY, SH, TINI, clean_env, percentile, rounded, spawn_wait
from benchmarks.harness import Context, Measure, Result, Section
from benchmarks.table import Budget, budget, get, ratio_text, table

EP_WEB = "entrypoint MODE=web"
EP_IMAGE = "entrypoint MODE=web, image env"


def image_env(tmp: Path) -> dict[str, str]:
    """What an image that serves every role sets in its ENV (docs/migrating-from-shell.md)."""
    return {
        "MODE": "web",
        "WORKER_CMD": "php artisan queue:work --tries=3 --timeout=60",
        "SCHEDULER_CMD": "php artisan schedule:work",
        "QUEUE_CONNECTION": "redis",
        "REDIS_HOST": "127.0.0.1",
        "REDIS_PORT": "6379",
        "ENTRYPOINT_STOP_TIMEOUT": "65",
        "ENTRYPOINT_STATE_FILE": str(tmp / "state-web-image.json"),
    }


def run(ctx: Context) -> dict[str, Result]:
    peers, sizes = ctx.peers, ctx.sizes
    sh = shutil.which("sh") or "/bin/sh"
    true = shutil.which("true") or "/bin/true"
    ep = [peers.entrypoint, "run", "--", "true"]
    commands: dict[str, tuple[list[str], dict[str, str]] | None] = {
        EP: (ep, clean_env()),
        EP_WEB: (ep, clean_env(MODE="web")),
        EP_IMAGE: (ep, clean_env(**image_env(ctx.tmp))),
        PY: ([peers.python, "-c", "pass"], clean_env()),
        TINI: ([peers.tini, "--", true], clean_env()) if peers.tini else None,
        DUMB: ([peers.dumb_init, true], clean_env()) if peers.dumb_init else None,
        SH: ([sh, "-c", "true"], clean_env()),
    }
    present = [label for label, setup in commands.items() if setup]
    samples: dict[str, list[float]] = {label: [] for label in present}
    warmup = 3
    for round_ in range(warmup + sizes.web_samples):
        shift = round_ % len(present)  # rotate, so no command always follows the same one
        for label in present[shift:] + present[:shift]:
            setup = commands[label]
            assert setup is not None
            elapsed, code, _ = spawn_wait(*setup)
            if code != 0:
                raise RuntimeError(f"{' '.join(setup[0])} exited {code}")
            if round_ >= warmup:
                samples[label].append(elapsed)
    python = statistics.median(samples[PY])
    results: dict[str, Any] = dict.fromkeys(commands)
    for label in present:
        median = statistics.median(samples[label])
        results[label] = {
            "median_ms": rounded(median),
            "p90_ms": rounded(percentile(samples[label], 90)),
            "vs_python": rounded(median / python),
        }
    importtime = {}
    for label in (EP_WEB, EP_IMAGE):
        setup = commands[label]
        assert setup is not None
        runs = [
            imports.parse(importtime_lines(peers.python, setup[0], setup[1]))
            for _ in range(sizes.importtime_runs)
        ]
        importtime[label] = imports.median_run(runs, imports.installed(peers.python))
    return {
        "web": {
            "samples": sizes.web_samples,
            "results": results,
            "importtime": importtime,
            "image_env": {k: v for k, v in image_env(ctx.tmp).items() if k != "MODE"},
            "launcher": {
                "pip": peers.pip,
                "console_script": peers.console_script,
                "console_script_imports_re": "import re" in peers.console_script,
            },
        }
    }


def importtime_lines(
    python: str, argv: list[str], env: dict[str, str], codes: tuple[int, ...] = (0,)
) -> list[str]:
    """stderr of `python -X importtime SCRIPT ARGS...`: the console script as its shebang would."""
    result = subprocess.run(
        [python, "-X", "importtime", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if result.returncode not in codes:
        raise RuntimeError(f"-X importtime {' '.join(argv)} exited {result.returncode}")
    return result.stderr.splitlines()


def render(r: Result) -> str:
    text = table(
        f"1. start to exec, web mode (median of {r['samples']}, ms)",
        [("median ms", "median_ms"), ("p90 ms", "p90_ms"), ("x python", "vs_python")],
        r["results"],
    )
    if "launcher" in r:
        launcher = r["launcher"]
        has_re = "has" if launcher["console_script_imports_re"] else "has no"
        text += (
            f"\n  (console script written by {launcher['pip']}: it {has_re} `import re`; "
            f"image env: {', '.join(r['image_env'])})"
        )
    for label, found in r.get("importtime", {}).items():
        text += "\n" + imports.line(f"-X importtime, {label}", found)
    return text


def budgets(r: Result) -> list[Budget]:
    py = get(r, "results", PY, "median_ms")
    found = []
    for name, label in (
        ("web overhead", EP),
        ("web start, MODE=web bare env", EP_WEB),
        ("web start, MODE=web image env", EP_IMAGE),
    ):
        web = get(r, "results", label, "median_ms")
        found.append(
            budget(name, "<= 1.5x python3 -c pass", web, py and 1.5 * py, ratio_text(web, py, "ms"))
        )
    return found


MEASURE = Measure(
    name="web",
    title="web mode: start to exec (bare and image environment), -X importtime",
    run=run,
    sections=(Section("web", render, budgets, {"samples": 0, "results": {}}),),
)
