"""The bundle (/opt/entrypoint, docker/Dockerfile target bundle) next to a wheel install.

    python benchmarks/bundle.py [--image entrypoint-bundle:ci | --bundle DIR]
                                [--wheel PATH] [--samples 40] [--json FILE]

One run, on this machine, interleaving the two (round-robin) so that drift
falls on both alike:

1. size on disk of the bundle directory (budget: under 30 MB);
2. start-to-exec in web mode, `entrypoint run -- true` from spawn to exit, the
   fast path (nothing to validate) and the full path (QUEUE_URL set: settings,
   click, structlog) (budget: the bundle within 1.5x of the wheel);
3. RSS of the supervisor in worker mode (`MODE=worker entrypoint run -- sleep`)
   once its child runs (budget: within 1.2x of the wheel);
4. `entrypoint health` against that supervisor's state file.

The bundle is copied out of the image (`docker create` + `docker cp`) unless
--bundle names a directory; it needs glibc 2.36 or newer (it is Debian
bookworm's Python). The wheel install is the console script of a throwaway
virtualenv with a NON-editable `pip install` of this repository, unless
--wheel names one. Nothing is asserted; the budgets are printed as met or
missed. `measure()` returns every figure as a dict (what --json writes).

In `python benchmarks/run.py` it is an optional measure: `prerequisites()`
says why it cannot run (no engine, no bundle image), `run()` measures the
image's bundle against the runner's own wheel install.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BUNDLE_IMAGE = "entrypoint-bundle:ci"
SIZE_BUDGET_MB = 30.0
START_BUDGET = 1.5
RSS_BUDGET = 1.2
# Variables that steer the entrypoint and must not leak in from outside.
_STEERING = ("MODE", "QUEUE_URL", "QUEUE_CONNECTION", "WEB_CMD", "WORKER_CMD", "SCHEDULER_CMD")


def log(message: str) -> None:
    print(f"[bundle] {message}", file=sys.stderr, flush=True)


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in _STEERING and not k.startswith(("ENTRYPOINT_", "PYTHON"))
    }
    env["ENTRYPOINT_LOG_FORMAT"] = "json"
    env.update(extra)
    return env


def disk_usage(path: Path) -> int:
    """Bytes of the regular files under `path` (links counted once, as `du -b`)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for directory, _dirs, files in os.walk(path):
        for name in files:
            info = os.lstat(os.path.join(directory, name))
            if (info.st_dev, info.st_ino) not in seen:
                seen.add((info.st_dev, info.st_ino))
                total += info.st_size
    return total


def timed_run(argv: Sequence[str], env: Mapping[str, str]) -> float:
    """Wall time in ms from spawn to exit; RuntimeError on a non-zero status."""
    quiet = [
        (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
        (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
    ]
    started = time.perf_counter()
    pid = os.posix_spawn(argv[0], list(argv), dict(env), file_actions=quiet)
    _, status = os.waitpid(pid, 0)
    elapsed = (time.perf_counter() - started) * 1000
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {os.waitstatus_to_exitcode(status)}")
    return elapsed


def rss_kb(pid: int) -> dict[str, int]:
    fields = {}
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "RssAnon", "RssFile"):
                fields[name] = int(value.split()[0])
    return fields


@contextmanager
def supervisor(entrypoint: str, tmp: Path, tag: str) -> Iterator[tuple[int, dict[str, str]]]:
    """A worker-mode supervisor running `sleep`, yielded once its child has started."""
    state = tmp / f"state-{tag}.json"
    env = clean_env(MODE="worker", ENTRYPOINT_STATE_FILE=str(state))
    proc = subprocess.Popen(
        [entrypoint, "run", "--", "sleep", "300"],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 30
        for line in proc.stderr:
            if '"child_started"' in line:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{entrypoint}: no child_started within 30 s")
        else:
            raise RuntimeError(f"{entrypoint} exited before its child started")
        yield proc.pid, env
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": round(statistics.median(ordered), 2),
        "p90_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))], 2),
        "min_ms": round(ordered[0], 2),
    }


def measure(bundle: Path, wheel: str, samples: int = 40, rss_rounds: int = 5) -> dict[str, Any]:
    """Every figure for the bundle directory `bundle` and the console script `wheel`."""
    peers = {"bundle": str(bundle / "entrypoint"), "wheel": wheel}
    true = shutil.which("true") or "/bin/true"
    paths = {
        "web_fast": clean_env(),
        "web_full": clean_env(QUEUE_URL="redis://127.0.0.1:1/0"),
    }
    timings: dict[str, dict[str, list[float]]] = {
        path: {peer: [] for peer in peers} for path in paths
    }
    warmup = 3
    for round_ in range(warmup + samples):
        order = list(peers) if round_ % 2 == 0 else list(reversed(peers))
        for path, env in paths.items():
            for peer in order:
                elapsed = timed_run([peers[peer], "run", "--", true], env)
                if round_ >= warmup:
                    timings[path][peer].append(elapsed)
    memory: dict[str, list[dict[str, int]]] = {peer: [] for peer in peers}
    health: dict[str, list[float]] = {peer: [] for peer in peers}
    per_round = max(1, samples // rss_rounds)
    with tempfile.TemporaryDirectory(prefix="bench-bundle-") as scratch:
        tmp = Path(scratch)
        for round_ in range(rss_rounds):
            # Both supervisors at once; `health` asked of each in turn.
            with (
                supervisor(peers["bundle"], tmp, f"bundle{round_}") as (bundle_pid, bundle_env),
                supervisor(peers["wheel"], tmp, f"wheel{round_}") as (wheel_pid, wheel_env),
            ):
                memory["bundle"].append(rss_kb(bundle_pid))
                memory["wheel"].append(rss_kb(wheel_pid))
                for n in range(per_round):
                    order = ["bundle", "wheel"] if n % 2 == 0 else ["wheel", "bundle"]
                    for peer in order:
                        env = bundle_env if peer == "bundle" else wheel_env
                        health[peer].append(timed_run([peers[peer], "health"], env))
    result: dict[str, Any] = {
        "bundle_dir": str(bundle),
        "wheel_entrypoint": wheel,
        "samples": samples,
        "size_mb": round(disk_usage(bundle) / 1e6, 1),
    }
    for peer in peers:
        result[peer] = {
            **{path: summary(timings[path][peer]) for path in paths},
            "health": summary(health[peer]),
            "rss_mb": round(statistics.median(m["VmRSS"] for m in memory[peer]) / 1024, 1),
            "rss_anon_mb": round(statistics.median(m["RssAnon"] for m in memory[peer]) / 1024, 1),
        }
    ratios = {
        path: round(result["bundle"][path]["median_ms"] / result["wheel"][path]["median_ms"], 2)
        for path in (*paths, "health")
    }
    ratios["rss"] = round(result["bundle"]["rss_mb"] / result["wheel"]["rss_mb"], 2)
    result["ratios"] = ratios
    result["budgets"] = {
        f"size < {SIZE_BUDGET_MB:g} MB": result["size_mb"] < SIZE_BUDGET_MB,
        f"web start (fast path) <= {START_BUDGET}x wheel": ratios["web_fast"] <= START_BUDGET,
        f"web start (full path) <= {START_BUDGET}x wheel": ratios["web_full"] <= START_BUDGET,
        f"supervisor RSS <= {RSS_BUDGET}x wheel": ratios["rss"] <= RSS_BUDGET,
    }
    return result


def render(result: dict[str, Any]) -> str:
    lines = [
        f"bundle: {result['bundle_dir']} ({result['size_mb']} MB on disk)",
        f"wheel:  {result['wheel_entrypoint']}",
        "",
        f"{'':24}{'bundle':>12}{'wheel':>12}{'ratio':>8}",
    ]
    rows = [
        ("web start, fast path", "web_fast", "median_ms", "ms"),
        ("web start, full path", "web_full", "median_ms", "ms"),
        ("health", "health", "median_ms", "ms"),
    ]
    for label, key, field, unit in rows:
        bundle, wheel = result["bundle"][key][field], result["wheel"][key][field]
        ratio = result["ratios"][key]
        lines.append(f"{label:24}{bundle:>9.1f} {unit}{wheel:>9.1f} {unit}{ratio:>7.2f}x")
    bundle, wheel = result["bundle"]["rss_mb"], result["wheel"]["rss_mb"]
    lines.append(
        f"{'supervisor RSS':24}{bundle:>9.1f} MB{wheel:>9.1f} MB{result['ratios']['rss']:>7.2f}x"
    )
    return "\n".join(lines)


def budgets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The budgets as benchmarks/run.py counts them (name, target, measured, met)."""
    ratios = result["ratios"]
    measured = {
        "size": f"{result['size_mb']} MB",
        "web start (fast path)": f"{ratios['web_fast']}x",
        "web start (full path)": f"{ratios['web_full']}x",
        "supervisor RSS": f"{ratios['rss']}x",
    }
    found = []
    for (text, met), (name, value) in zip(result["budgets"].items(), measured.items(), strict=True):
        target = text.removeprefix(name).strip()
        found.append({"name": f"bundle {name}", "target": target, "measured": value, "met": met})
    return found


def extract_bundle(image: str, into: Path) -> Path:
    """/opt/entrypoint of `image`, copied into `into` (docker create + docker cp)."""
    name = f"bench-bundle-{os.getpid()}"
    subprocess.run(
        ["docker", "create", "--name", name, image, "/opt/entrypoint/entrypoint"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    try:
        subprocess.run(
            ["docker", "cp", f"{name}:/opt/entrypoint", str(into / "entrypoint")],
            check=True,
            capture_output=True,
            timeout=300,
        )
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60)
    return into / "entrypoint"


def build_wheel_venv(into: Path) -> str:
    """A throwaway venv with this repository installed NON-editable; its console script."""
    source = into / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "entrypoint", source / "entrypoint", ignore=shutil.ignore_patterns("__pycache__")
    )
    venv = into / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    env = clean_env(PIP_DISABLE_PIP_VERSION_CHECK="1")
    for argv in (
        [base, "-m", "venv", str(venv)],
        [str(venv / "bin/python"), "-m", "pip", "install", "-q", str(source)],
    ):
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:4])}... failed:\n{proc.stderr[-3000:]}")
    return str(venv / "bin" / "entrypoint")


def prerequisites() -> str | None:
    """Why the runner cannot measure the bundle here, or None."""
    if shutil.which("docker") is None:
        return "no docker client to copy the bundle out of its image"
    proc = subprocess.run(
        ["docker", "image", "inspect", BUNDLE_IMAGE], capture_output=True, timeout=60, check=False
    )
    if proc.returncode != 0:
        return f"no image {BUNDLE_IMAGE} (bash .ci/docker-up builds it)"
    return None


def run(tmp: Path, entrypoint: str, quick: bool) -> dict[str, Any]:
    """The runner's entry: the image's bundle against the runner's wheel install."""
    into = tmp / "bundle"
    into.mkdir(exist_ok=True)
    bundle = extract_bundle(BUNDLE_IMAGE, into)
    return measure(bundle, entrypoint, samples=10 if quick else 40, rss_rounds=2 if quick else 5)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default=BUNDLE_IMAGE, help="bundle image to copy it from")
    parser.add_argument("--bundle", type=Path, help="a bundle directory (skips --image)")
    parser.add_argument("--wheel", help="an installed console script (default: a fresh venv)")
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--json", type=Path, help="write every figure there")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-bundle-") as scratch:
        tmp = Path(scratch)
        bundle = args.bundle or extract_bundle(args.image, tmp)
        wheel = args.wheel or build_wheel_venv(tmp)
        log(f"measuring {bundle} against {wheel}, {args.samples} samples")
        result = measure(bundle, wheel, samples=args.samples)
    print(render(result) + "\n")
    for budget in budgets(result):
        print(f"  {'met   ' if budget['met'] else 'MISSED'} {budget['name']} {budget['target']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
