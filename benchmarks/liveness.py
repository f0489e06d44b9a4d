"""What liveness costs and how fast it acts, with real processes.

    .venv/bin/python benchmarks/liveness.py [--health N] [--idle S] [--trials N]
                                            [--outage S] [--json FILE]

- health: `entrypoint health` and `entrypoint health --ready` (the console
  script, as a HEALTHCHECK runs it) N times each against a running supervisor
  with NOTIFY and a watchdog; wall time and CPU time (user + system, from
  wait4) per run, p50 and p95. The budget is p95 under 50 ms wall, 30 ms CPU.
  Measured with the project installed into a throwaway venv (`pip install .`,
  byte-compiled, as in an image), and with the dev venv (an editable install,
  whose import hook and uncompiled sources cost more).
- frozen: a worker that heartbeats every 0.5 s is SIGSTOPped; the time from
  the freeze to `watchdog_expired` and to the next `child_started`, with a
  2 s watchdog and a 1 s grace, over notify and over a heartbeat file.
- idle: the supervisor's voluntary context switches over S idle seconds:
  features off, NOTIFY with a silent child, and a 1 s watchdog fed every
  0.5 s by datagrams or by touching a file.
- outage: a private redis-server stopped for S seconds under a worker that
  exits when its connection closes; respawns while Redis is down,
  `dependency_waiting` lines, and the time from Redis answering to the next
  `child_started`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers import Running, sleep_until  # noqa: E402
from tests.liveness_helpers import PrivateRedis, Worker, at, child_pid, voluntary_switches  # noqa: E402

CONSOLE_SCRIPT = str(Path(sys.executable).parent / "entrypoint")


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """(wall s, CPU s, exit status) of one run of argv."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_utime + usage.ru_stime, proc.returncode


def installed_entrypoint(tmp: Path) -> str:
    """`entrypoint` from a throwaway venv with the project installed as an image installs it."""
    from benchmarks.peers import build_venv

    return str(build_venv(tmp, ROOT) / "bin" / "entrypoint")


def bench_health(tmp: Path, runs: int) -> dict[str, Any]:
    """health and health --ready, by the installed console script and by the dev venv's."""
    worker = Worker(tmp, ENTRYPOINT_NOTIFY="1", ENTRYPOINT_WATCHDOG_TIMEOUT="30")
    # Not the tests' PYTHONPATH (the sources) nor PYTHONDONTWRITEBYTECODE: what an image has.
    env = {k: v for k, v in worker.env.items() if not k.startswith("PYTHON")}
    commands = {
        "installed (pip install ., as in an image)": (installed_entrypoint(tmp), env),
        "dev venv (editable, PYTHONPATH, no .pyc)": (CONSOLE_SCRIPT, worker.env),
    }
    results: dict[str, Any] = {}
    with worker.run("--send", "0:READY=1", "--watchdog-every", "1") as run:
        child_pid(run)
        sleep_until(lambda: worker.state().get("ready"), 10)
        for install, (script, script_env) in commands.items():
            for label, args in (("health", ["health"]), ("health --ready", ["health", "--ready"])):
                samples = [timed([script, *args], script_env) for _ in range(runs)]
                walls = [s[0] * 1000 for s in samples]
                cpus = [s[1] * 1000 for s in samples]
                results.setdefault(install, {})[label] = {
                    "runs": runs,
                    "exit_codes": sorted({s[2] for s in samples}),
                    "wall_p50_ms": round(percentile(walls, 50), 1),
                    "wall_p95_ms": round(percentile(walls, 95), 1),
                    "cpu_p50_ms": round(percentile(cpus, 50), 1),
                    "cpu_p95_ms": round(percentile(cpus, 95), 1),
                }
        run.signal(signal.SIGTERM)
        run.wait()
    return results


def bench_frozen(tmp: Path, trials: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for source in ("notify", "file"):
        detected, back = [], []
        for trial in range(trials):
            here = tmp / f"frozen-{source}-{trial}"
            here.mkdir()
            beat = here / "beat"
            settings = {"ENTRYPOINT_WATCHDOG_TIMEOUT": "2", "ENTRYPOINT_STOP_TIMEOUT": "1"}
            if source == "notify":
                worker = Worker(here, ENTRYPOINT_NOTIFY="1", **settings)
                args = ["--watchdog-every", "0.5"]
            else:
                worker = Worker(here, ENTRYPOINT_HEARTBEAT_FILE=str(beat), **settings)
                args = ["--heartbeat-file", str(beat), "--every", "0.5"]
            with worker.run(*args) as run:
                pid = child_pid(run)
                time.sleep(1.3)  # a few heartbeats first, and a freeze between two of them
                os.kill(pid, signal.SIGSTOP)
                frozen = time.time()
                expired = run.wait_event("watchdog_expired", timeout=20)[0]
                restarted = run.wait_event("child_started", timeout=20, count=2)[1]
                detected.append(at(expired) - frozen)
                back.append(at(restarted) - frozen)
                run.signal(signal.SIGTERM)
                run.wait(20)
        results[source] = {
            "watchdog_s": 2.0,
            "grace_s": 1.0,
            "detected_s": [round(d, 2) for d in detected],
            "back_s": [round(b, 2) for b in back],
        }
    return results


def bench_idle(tmp: Path, seconds: float) -> dict[str, Any]:
    cases: dict[str, tuple[dict[str, str], list[str]]] = {
        "off": ({}, []),
        "notify, silent child": ({"ENTRYPOINT_NOTIFY": "1"}, ["--send", "0:READY=1"]),
        "notify, 1 s watchdog, WATCHDOG=1 every 0.5 s": (
            {"ENTRYPOINT_NOTIFY": "1", "ENTRYPOINT_WATCHDOG_TIMEOUT": "1"},
            ["--watchdog-every", "0.5"],
        ),
        "heartbeat file, 1 s watchdog, touched every 0.5 s": (
            {"ENTRYPOINT_HEARTBEAT_FILE": "{beat}", "ENTRYPOINT_WATCHDOG_TIMEOUT": "1"},
            ["--heartbeat-file", "{beat}", "--every", "0.5"],
        ),
    }
    results: dict[str, Any] = {}
    for index, (label, (settings, args)) in enumerate(cases.items()):
        for state_dir in ("tmp", "shm"):
            here = tmp / f"idle-{index}-{state_dir}"
            here.mkdir()
            beat = str(here / "beat")
            env = {k: v.format(beat=beat) for k, v in settings.items()}
            if state_dir == "shm":
                env["ENTRYPOINT_STATE_FILE"] = f"/dev/shm/entrypoint-bench-{os.getpid()}.json"
            worker = Worker(here, **env)
            try:
                with worker.run(*(a.format(beat=beat) for a in args)) as run:
                    child_pid(run)
                    time.sleep(0.5)  # the start-up settles
                    before = voluntary_switches(run.pid)
                    time.sleep(seconds)  # the measurement
                    switches = voluntary_switches(run.pid) - before
                    run.signal(signal.SIGTERM)
                    run.wait()
            finally:
                if state_dir == "shm":
                    Path(env["ENTRYPOINT_STATE_FILE"]).unlink(missing_ok=True)
            key = "state file on /dev/shm (tmpfs)" if state_dir == "shm" else "state file on /tmp"
            results.setdefault(label, {})[key] = switches
    return {"seconds": seconds, "wakeups": results}


def bench_outage(tmp: Path, seconds: float) -> dict[str, Any]:
    redis = PrivateRedis(tmp)
    redis.start()
    try:
        worker = Worker(tmp, QUEUE_URL=redis.url(), ENTRYPOINT_WAIT_TIMEOUT=str(seconds + 60))
        run: Running
        with worker.run("--hold-redis") as run:
            child_pid(run)
            run.wait_stdout(r"^redis connected")
            down = redis.stop()
            run.wait_event("dependency_waiting")
            health = []
            while time.time() < down + seconds:
                health.append(subprocess.run(
                    [CONSOLE_SCRIPT, "health"], env=worker.env, capture_output=True, check=False
                ).returncode)  # fmt: skip
                time.sleep(1)
            respawns = [e for e in run.events("child_started") if at(e) > down]
            waiting = len(run.events("dependency_waiting"))
            up = redis.start()
            back = run.wait_event("child_started", timeout=30, count=2)[1]
            run.signal(signal.SIGTERM)
            run.wait()
    finally:
        redis.close()
    return {
        "outage_s": round(up - down, 1),
        "respawns_during_outage": len(respawns),
        "dependency_waiting_lines": waiting,
        "health_exit_codes_during_outage": sorted(set(health)),
        "back_after_redis_answered_s": round(at(back) - up, 2),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--health", type=int, default=100, help="runs of each health command")
    parser.add_argument("--idle", type=float, default=10.0, help="idle seconds measured")
    parser.add_argument("--trials", type=int, default=3, help="frozen-worker trials per source")
    parser.add_argument("--outage", type=float, default=10.0, help="seconds Redis stays down")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="entrypoint-liveness-") as name:
        tmp = Path(name)
        for section, bench, size in (
            ("health", bench_health, args.health),
            ("frozen", bench_frozen, args.trials),
            ("idle", bench_idle, args.idle),
            ("outage", bench_outage, args.outage),
        ):
            here = tmp / section
            here.mkdir()
            results[section] = bench(here, size)
            print(f"{section}: {json.dumps(results[section], indent=2)}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
