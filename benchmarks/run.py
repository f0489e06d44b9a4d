"""entrypoint side by side with tini, dumb-init, supervisord and honcho.

    python benchmarks/run.py [--quick] [--json FILE] [--plot FILE]

One run measures every figure for every peer, interleaving the commands
(round-robin, or all peers running at once) so that the machine's drift falls
on all of them alike:

1. start-to-exec overhead in web mode (`entrypoint run -- true` against
   `python3 -c pass`, `tini -- true`, `dumb-init true`, `sh -c true`);
2. signal forwarding latency, kill() to the child, p50 and p99;
3. idle cost of the supervising process over a quiet window: wakeups (voluntary
   context switches), CPU time, RSS;
4. reaping 2,000 orphans as PID 1 of a new PID namespace, and zombies left;
5. restart latency after a clean exit: child exit to the next child's start;
6. time and peak memory of `entrypoint health` and `entrypoint check`.

The entrypoint measured is the console script of a throwaway virtualenv made
with a NON-editable `pip install` of this repository (what users run: an
editable install adds the import of its path finder to every start). Missing
peers are installed first: Debian's tini, dumb-init and supervisor with
apt-get, honcho (and matplotlib for --plot) with pip into this interpreter's
environment. Budgets are printed as met or missed next to each figure; nothing
is asserted. Every process started is stopped in a `finally`.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import itertools
import json
import math
import os
import platform
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
REDIS_URL = "redis://127.0.0.1:6379/0"

# The labels of every peer, as they appear in the table and the JSON.
EP = "entrypoint"
EP_WARN = "entrypoint (log warning)"
EP_REDIS = "entrypoint (+ Redis dep.)"
EP_RSS = "entrypoint (MAX_RSS, 5 s)"
PY = "python3 -c pass"
TINI = "tini"
DUMB = "dumb-init"
SH = "sh -c true"
SUPD = "supervisord"
HONCHO = "honcho"

APT_PACKAGES = {"tini": "tini", "dumb-init": "dumb-init", "supervisord": "supervisor"}
# Variables that steer the entrypoint (or a Python) and must not leak in from outside.
_STEERING = ("MODE", "QUEUE_URL", "QUEUE_CONNECTION", "WEB_CMD", "WORKER_CMD", "SCHEDULER_CMD")


@dataclass(frozen=True)
class Sizes:
    """How much of each measurement a run does."""

    web_samples: int
    signals: int
    idle_seconds: float
    orphans: int
    reap_rounds: int
    restarts: int
    supervisord_restarts: int
    child_lifetime: float
    cli_samples: int


FULL = Sizes(
    web_samples=40,
    signals=250,
    idle_seconds=10.0,
    orphans=2000,
    reap_rounds=3,
    restarts=30,
    supervisord_restarts=5,
    child_lifetime=0.2,
    cli_samples=20,
)
QUICK = Sizes(
    web_samples=8,
    signals=40,
    idle_seconds=2.0,
    orphans=2000,
    reap_rounds=1,
    restarts=6,
    supervisord_restarts=2,
    child_lifetime=0.05,
    cli_samples=4,
)

# The children, written to files in the run's temporary directory. Each reports
# on a named pipe (its path is argv[1]) with CLOCK_MONOTONIC timestamps, the
# clock that time.monotonic_ns() reads in every process of the machine.
SIGNAL_CHILD = """\
import os, signal, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY)
wanted = {signal.SIGUSR1, signal.SIGTERM, signal.SIGINT}
signal.pthread_sigmask(signal.SIG_BLOCK, wanted)
os.write(fd, b"ready %d\\n" % os.getpid())
while True:
    signum = signal.sigwait(wanted)
    now = time.monotonic_ns()
    if signum != signal.SIGUSR1:
        os._exit(0)
    os.write(fd, b"%d\\n" % now)
"""

RESTART_CHILD = """\
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY)
os.write(fd, b"start %d\\n" % time.monotonic_ns())
time.sleep(float(sys.argv[2]))
os.write(fd, b"exit %d\\n" % time.monotonic_ns())
os._exit(0)
"""

# Runs as the only child of PID 1 in a new PID namespace. A middle process forks
# the orphans and exits, so they are re-parented to PID 1; they wait on a pipe,
# and all exit when it is closed. Then: how long until /proc is back to what it
# was (every orphan reaped), and how many zombies are left at the end.
REAP_CHILD = """\
import json, os, signal, sys, time

def pids():
    return [name for name in os.listdir("/proc") if name.isdigit()]

def reaper_cpu_ms():
    try:
        with open("/proc/1/sched") as handle:
            for line in handle:
                if line.startswith("se.sum_exec_runtime"):
                    return float(line.split(":")[1])
    except OSError:
        pass
    return -1.0

def zombies():
    count = 0
    for pid in pids():
        try:
            with open("/proc/%s/stat" % pid) as handle:
                count += handle.read().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            pass
    return count

orphans = int(sys.argv[1])
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
before = len(pids())
release_r, release_w = os.pipe()
middle = os.fork()
if middle == 0:
    os.close(release_w)
    for _ in range(orphans):
        if os.fork() == 0:
            os.read(release_r, 1)
            os._exit(0)
    os._exit(0)
os.close(release_r)
os.waitpid(middle, 0)
created = len(pids()) - before
cpu_before = reaper_cpu_ms()
start = time.monotonic()
deadline = start + 20.0
os.close(release_w)
left = created
while left > 0 and time.monotonic() < deadline:
    time.sleep(0.002)  # a listing of /proc costs ~0.5 ms: poll lightly, not to steal the CPU
    left = len(pids()) - before
elapsed = time.monotonic() - start
cpu = reaper_cpu_ms() - cpu_before
with open("/proc/1/comm") as handle:
    pid1 = handle.read().strip()
print(json.dumps({"ms": elapsed * 1000, "created": created, "left": left,
                  "zombies_left": zombies(), "pid1": pid1, "pid1_cpu_ms": cpu}), flush=True)
os.kill(1, signal.SIGTERM)
signal.sigtimedwait({signal.SIGTERM}, 10)
os._exit(0)
"""

# Runs one command and reports "wall_ns exit_code maxrss_kb". ru_maxrss survives
# exec, so a command started by a big process reports at least that process's
# RSS (all of it after a vfork or posix_spawn, its copied part after a fork).
# This small launcher forks, which leaves a floor of a few MB (measured: `true`).
LAUNCHER = """\
import os, sys, time
null = os.open(os.devnull, os.O_RDWR)
start = time.perf_counter_ns()
pid = os.fork()
if pid == 0:
    try:
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.execv(sys.argv[1], sys.argv[1:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
elapsed = time.perf_counter_ns() - start
print(elapsed, os.waitstatus_to_exitcode(status), usage.ru_maxrss)
"""


# -- small helpers -----------------------------------------------------------------


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def rounded(value: float | None, digits: int = 2) -> float | None:
    return None if value is None or math.isnan(value) else round(value, digits)


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without ENTRYPOINT_*, MODE, QUEUE_*, *_CMD and PYTHON*, plus `extra`."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("ENTRYPOINT_", "PYTHON")) and name not in _STEERING
    }
    env.update(extra)
    return env


def run_quiet(
    argv: Sequence[str], timeout: float, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, check=False, **kwargs
    )


def spawn_wait(
    argv: Sequence[str], env: Mapping[str, str], timeout: float = 30.0
) -> tuple[float, int, float]:
    """Run argv to its end, output discarded: (wall ms, exit code, peak RSS MB).

    posix_spawn and wait4 keep the harness's own cost small and constant; the
    wait is bounded through a pidfd.
    """
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
        (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
    ]
    start = time.perf_counter_ns()
    pid = os.posix_spawn(argv[0], list(argv), dict(env), file_actions=actions)
    pidfd = os.pidfd_open(pid)
    try:
        ready, _, _ = select.select([pidfd], [], [], timeout)
        if not ready:
            os.kill(pid, signal.SIGKILL)
        _, status, usage = os.wait4(pid, 0)
    finally:
        os.close(pidfd)
    elapsed = (time.perf_counter_ns() - start) / 1e6
    if not ready:
        raise TimeoutError(f"{argv[0]} did not finish within {timeout} s")
    return elapsed, os.waitstatus_to_exitcode(status), usage.ru_maxrss / 1024


class Fifo:
    """A named pipe that children write lines to. We hold a writer: it never reads EOF."""

    def __init__(self, path: Path) -> None:
        os.mkfifo(path)
        self.path = path
        self._read = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        self._keep = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        self._buffer = b""
        self._lines: list[str] = []

    def fileno(self) -> int:
        return self._read

    def drain(self) -> list[str]:
        """Every complete line available now, without blocking."""
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(self._read, 65536):
                self._buffer += chunk
        *complete, self._buffer = self._buffer.split(b"\n")
        self._lines.extend(line.decode() for line in complete)
        lines, self._lines = self._lines, []
        return lines

    def readline(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while not self._lines:
            self._lines = self.drain()
            if self._lines:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"nothing on {self.path.name} within {timeout} s")
            select.select([self._read], [], [], left)
        return self._lines.pop(0)

    def close(self) -> None:
        for fd in (self._read, self._keep):
            with contextlib.suppress(OSError):
                os.close(fd)


# -- processes ----------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/PID/stat (after the command name), or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _identity(pid: int) -> tuple[int, str] | None:
    fields = _stat_fields(pid)
    return None if fields is None else (pid, fields[19])


def descendants(pid: int) -> list[int]:
    """Every living descendant of `pid`, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat_fields(int(entry))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def command_name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as handle:
            return handle.read().strip()
    except OSError:
        return ""


class Processes:
    """Every long-running process a benchmark starts, so that all are stopped at the end."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, argv: Sequence[str], env: Mapping[str, str]) -> int:
        with open(self.logs / f"{name.replace(' ', '_')}.log", "ab") as stderr:
            proc = subprocess.Popen(
                list(argv),
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                cwd=self.logs,
                start_new_session=True,
            )
        self.running[name] = proc
        return proc.pid

    def log_tail(self, name: str, lines: int = 15) -> str:
        path = self.logs / f"{name.replace(' ', '_')}.log"
        with contextlib.suppress(OSError):
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self, name: str, timeout: float = 5.0) -> None:
        """TERM, then KILL to the process and every descendant still alive."""
        proc = self.running.pop(name, None)
        if proc is None:
            return
        tree = [ident for pid in descendants(proc.pid) if (ident := _identity(pid))]
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout)
        tree += [ident for pid in descendants(proc.pid) if (ident := _identity(pid))]
        if proc.poll() is None:
            proc.kill()
        for pid, started in tree:
            if _identity(pid) == (pid, started):  # still the same process, not a recycled pid
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)

    def stop_all(self) -> None:
        for name in list(self.running):
            self.stop(name)


# -- the peers ----------------------------------------------------------------------


@dataclass
class Peers:
    """Where every program under test is; None (and a reason in `missing`) when absent."""

    entrypoint: str
    python: str  # the throwaway venv's interpreter
    tini: str | None = None
    dumb_init: str | None = None
    supervisord: str | None = None
    honcho: list[str] | None = None
    unshare: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)


def install_apt(binaries: list[str]) -> None:
    """apt-get install the Debian packages that provide `binaries` (update first if needed)."""
    packages = sorted({APT_PACKAGES[name] for name in binaries})
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        log(f"cannot install {', '.join(packages)}: not root, or no apt-get")
        return
    log(f"apt-get install {' '.join(packages)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]
    try:
        if run_quiet(install, 600, env=env).returncode != 0:
            run_quiet(["apt-get", "update", "-qq"], 600, env=env)
            result = run_quiet(install, 600, env=env)
            if result.returncode != 0:
                log(f"apt-get install failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    except subprocess.TimeoutExpired:
        log("apt-get timed out")


def install_pip(package: str, module: str) -> bool:
    """pip install `package` into this interpreter's environment unless `module` imports."""
    if importlib.util.find_spec(module) is not None:
        return True
    log(f"pip install {package} (into {sys.prefix})")
    try:
        result = run_quiet([sys.executable, "-m", "pip", "install", "-q", package], 600)
    except subprocess.TimeoutExpired:
        log(f"pip install {package} timed out")
        return False
    if result.returncode != 0:
        log(f"pip install {package} failed:\n{result.stderr[-2000:]}")
    importlib.invalidate_caches()
    return importlib.util.find_spec(module) is not None


def build_venv(tmp: Path, project: Path) -> Path:
    """A throwaway venv with `project` installed NON-editable, by the latest pip.

    A copy is installed, so that the build leaves nothing in the project's tree.
    """
    source = tmp / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(project / name, source / name)
    shutil.copytree(
        project / "entrypoint",
        source / "entrypoint",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    venv = tmp / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    log(f"building a throwaway venv: {base} -m venv; pip install --upgrade pip; pip install .")
    steps = [
        ([base, "-m", "venv", str(venv)], True),
        ([str(venv / "bin/python"), "-m", "pip", "install", "-q", "--upgrade", "pip"], False),
        ([str(venv / "bin/python"), "-m", "pip", "install", "-q", str(source)], True),
    ]
    env = clean_env(PIP_DISABLE_PIP_VERSION_CHECK="1")
    for argv, required in steps:
        result = run_quiet(argv, 600, env=env)
        if result.returncode != 0:
            message = f"{' '.join(argv[:4])}... failed:\n{result.stderr[-3000:]}"
            if required:
                raise RuntimeError(message)
            log(message)
    return venv


def find_peers(tmp: Path, project: Path, *, plot: bool) -> Peers:
    absent = [name for name in APT_PACKAGES if not shutil.which(name)]
    if absent:
        install_apt(absent)
    venv = build_venv(tmp, project)
    peers = Peers(entrypoint=str(venv / "bin/entrypoint"), python=str(venv / "bin/python3"))
    peers.tini = shutil.which("tini")
    peers.dumb_init = shutil.which("dumb-init")
    peers.supervisord = shutil.which("supervisord")
    peers.unshare = shutil.which("unshare")
    for label, path in (("tini", peers.tini), ("dumb-init", peers.dumb_init)):
        if path is None:
            peers.missing.append(f"{label}: not installed (Debian package {label})")
    if peers.supervisord is None:
        peers.missing.append("supervisord: not installed (Debian package supervisor)")
    if peers.unshare is None or os.geteuid() != 0:
        peers.missing.append("unshare: a new PID namespace needs root and util-linux's unshare")
    if install_pip("honcho", "honcho"):
        script = Path(sys.executable).parent / "honcho"
        peers.honcho = (
            [str(script)]
            if script.exists()
            else [sys.executable, "-c", "from honcho.command import main; main()"]
        )
    else:
        peers.missing.append("honcho: pip install honcho failed")
    if plot and not install_pip("matplotlib", "matplotlib"):
        peers.missing.append("matplotlib: pip install matplotlib failed (no picture)")
    peers.versions = versions(peers)
    return peers


def versions(peers: Peers) -> dict[str, str]:
    def first_line(argv: list[str]) -> str:
        try:
            result = run_quiet(argv, 30)
        except (OSError, subprocess.TimeoutExpired):
            return "?"
        lines = (result.stdout + result.stderr).strip().splitlines()
        return lines[0].strip() if lines else "?"

    found = {
        EP: first_line([peers.entrypoint, "--version"]),
        "python": first_line([peers.python, "--version"]),
    }
    if peers.tini:
        found[TINI] = first_line([peers.tini, "--version"])
    if peers.dumb_init:
        found[DUMB] = first_line([peers.dumb_init, "--version"])
    if peers.supervisord:
        found[SUPD] = first_line([peers.supervisord, "--version"])
    if peers.honcho:
        found[HONCHO] = first_line([*peers.honcho, "version"])
    return found


# -- 1. web mode: start to exec -------------------------------------------------------


def bench_web(peers: Peers, sizes: Sizes) -> dict[str, Any]:
    sh = shutil.which("sh") or "/bin/sh"
    true = shutil.which("true") or "/bin/true"
    commands: dict[str, list[str] | None] = {
        EP: [peers.entrypoint, "run", "--", "true"],
        PY: [peers.python, "-c", "pass"],
        TINI: [peers.tini, "--", true] if peers.tini else None,
        DUMB: [peers.dumb_init, true] if peers.dumb_init else None,
        SH: [sh, "-c", "true"],
    }
    present = [label for label, argv in commands.items() if argv]
    env = clean_env()
    samples: dict[str, list[float]] = {label: [] for label in present}
    warmup = 3
    for round_ in range(warmup + sizes.web_samples):
        shift = round_ % len(present)  # rotate, so no command always follows the same one
        for label in present[shift:] + present[:shift]:
            argv = commands[label]
            assert argv is not None
            elapsed, code, _ = spawn_wait(argv, env)
            if code != 0:
                raise RuntimeError(f"{' '.join(argv)} exited {code}")
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
    return {"samples": sizes.web_samples, "results": results}


# -- 2. signal forwarding latency --------------------------------------------------------


def worker_env(tmp: Path, name: str, **extra: str) -> dict[str, str]:
    return clean_env(
        MODE="worker",
        ENTRYPOINT_STATE_FILE=str(tmp / f"state-{name}.json"),
        ENTRYPOINT_LOG_FORMAT="json",
        ENTRYPOINT_STOP_TIMEOUT="3",
        **extra,
    )


def bench_signals(peers: Peers, sizes: Sizes, tmp: Path, procs: Processes) -> dict[str, Any]:
    child = [peers.python, "-I", "-S", str(tmp / "signal_child.py")]
    setups: dict[str, tuple[list[str], dict[str, str]] | None] = {
        EP: ([peers.entrypoint, "run", "--", *child], worker_env(tmp, "signal")),
        EP_WARN: (
            [peers.entrypoint, "run", "--", *child],
            worker_env(tmp, "signal-warn", ENTRYPOINT_LOG_LEVEL="warning"),
        ),
        TINI: ([peers.tini, "-s", "--", *child], clean_env()) if peers.tini else None,
        DUMB: ([peers.dumb_init, *child], clean_env()) if peers.dumb_init else None,
    }
    present = [label for label, setup in setups.items() if setup]
    fifos: dict[str, Fifo] = {}
    pids: dict[str, int] = {}
    try:
        for label in present:
            setup = setups[label]
            assert setup is not None
            fifo = fifos[label] = Fifo(tmp / f"signal-{len(fifos)}.fifo")
            pids[label] = procs.start(f"signal {label}", [*setup[0], str(fifo.path)], setup[1])
        for label in present:
            try:
                fifos[label].readline(15)
            except TimeoutError:
                raise RuntimeError(
                    f"{label}: its child never started\n{procs.log_tail('signal ' + label)}"
                ) from None
        samples: dict[str, list[float]] = {label: [] for label in present}
        warmup = 10
        for round_ in range(warmup + sizes.signals):
            shift = round_ % len(present)
            for label in present[shift:] + present[:shift]:
                sent = time.monotonic_ns()
                os.kill(pids[label], signal.SIGUSR1)
                received = int(fifos[label].readline(5))
                if round_ >= warmup:
                    samples[label].append((received - sent) / 1000)
                # Pacing: let the supervisor finish what follows a forward (its log
                # line) before the next peer is measured on the other core.
                time.sleep(0.002)
    finally:
        for label in present:
            procs.stop(f"signal {label}")
        for fifo in fifos.values():
            fifo.close()
    results: dict[str, Any] = dict.fromkeys(setups)
    for label in present:
        values = samples[label]
        results[label] = {
            "p50_us": rounded(percentile(values, 50), 1),
            "p90_us": rounded(percentile(values, 90), 1),
            "p99_us": rounded(percentile(values, 99), 1),
            "max_us": rounded(max(values), 1),
        }
    return {"signals": sizes.signals, "results": results}


# -- 3. idle cost ------------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    voluntary: int
    involuntary: int
    cpu_ms: float
    rss_mb: float


def usage(pid: int) -> Usage:
    """Context switches and CPU time summed over the threads of `pid`, and its RSS."""
    voluntary = involuntary = 0
    cpu_ms = 0.0
    precise = True
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):
            with open(f"/proc/{pid}/task/{tid}/status") as handle:
                for line in handle:
                    if line.startswith("voluntary_ctxt_switches"):
                        voluntary += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches"):
                        involuntary += int(line.split()[1])
            try:
                with open(f"/proc/{pid}/task/{tid}/sched") as handle:
                    for line in handle:
                        if line.startswith("se.sum_exec_runtime"):
                            cpu_ms += float(line.split(":")[1])
            except OSError:
                precise = False
    if not precise:  # no scheduler debug file: clock ticks of the whole process
        fields = _stat_fields(pid) or []
        cpu_ms = (int(fields[11]) + int(fields[12])) * 1000 / CLK_TCK if fields else math.nan
    rss_kb = 0
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                rss_kb = int(line.split()[1])
    return Usage(voluntary, involuntary, cpu_ms, rss_kb / 1024)


def redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=2):
            return True
    except OSError:
        return False


def supervisord_conf(tmp: Path, name: str, command: str) -> Path:
    conf = tmp / f"supervisord-{name}.conf"
    conf.write_text(
        f"""[supervisord]
nodaemon=true
user=root
logfile={tmp}/supervisord-{name}.log
pidfile={tmp}/supervisord-{name}.pid
childlogdir={tmp}

[program:child]
command={command.replace("%", "%%")}
autostart=true
autorestart=true
startsecs=0
stopwaitsecs=3
stdout_logfile=NONE
redirect_stderr=true
"""
    )
    return conf


def bench_idle(
    peers: Peers,
    sizes: Sizes,
    tmp: Path,
    procs: Processes,
    after: Callable[[dict[str, int]], dict[str, Any]],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The idle window; then `after(pids)` runs while the supervisors still run."""
    sleep = [shutil.which("sleep") or "/bin/sleep", "3600"]
    procfile = tmp / "Procfile"
    procfile.write_text("sleeper: sleep 3600\n")
    # The same worker with a queue to wait for first: what the probes leave behind.
    with_redis = worker_env(tmp, "idle-redis", QUEUE_URL=REDIS_URL, ENTRYPOINT_WAIT_TIMEOUT="5")
    setups: dict[str, tuple[list[str], dict[str, str]] | None] = {
        EP: ([peers.entrypoint, "run", "--", *sleep], worker_env(tmp, "idle")),
        EP_REDIS: ([peers.entrypoint, "run", "--", *sleep], with_redis) if redis_up() else None,
        # Memory recycling on, at the default interval: one sample (one wakeup) every 5 s.
        # Per minute, over a whole minute: benchmarks/lifecycle.py.
        EP_RSS: (
            [peers.entrypoint, "run", "--", *sleep],
            worker_env(tmp, "idle-rss", ENTRYPOINT_MAX_RSS="1G"),
        ),
        TINI: ([peers.tini, "-s", "--", *sleep], clean_env()) if peers.tini else None,
        DUMB: ([peers.dumb_init, *sleep], clean_env()) if peers.dumb_init else None,
        SUPD: (
            [peers.supervisord, "-c", str(supervisord_conf(tmp, "idle", " ".join(sleep)))],
            clean_env(),
        )
        if peers.supervisord
        else None,
        HONCHO: ([*peers.honcho, "-f", str(procfile), "-d", str(tmp), "start"], clean_env())
        if peers.honcho
        else None,
    }
    present = [label for label, setup in setups.items() if setup]
    pids: dict[str, int] = {}
    try:
        for label in present:
            setup = setups[label]
            assert setup is not None
            pids[label] = procs.start(f"idle {label}", *setup)
        deadline = time.monotonic() + 20
        waiting = set(present)
        while waiting:  # every supervisor has its `sleep` running
            waiting = {
                label
                for label in waiting
                if not any(command_name(pid) == "sleep" for pid in descendants(pids[label]))
            }
            if waiting and time.monotonic() > deadline:
                tails = "\n".join(procs.log_tail(f"idle {label}") for label in waiting)
                raise RuntimeError(f"no child started under {sorted(waiting)}\n{tails}")
            time.sleep(0.05)
        time.sleep(1.5)  # past supervisord's and honcho's start-up work
        before = {label: usage(pids[label]) for label in present}
        started = time.monotonic()
        time.sleep(sizes.idle_seconds)
        seconds = time.monotonic() - started
        after_usage = {label: usage(pids[label]) for label in present}
        for label in present:
            if procs.running[f"idle {label}"].poll() is not None:
                raise RuntimeError(f"{label} exited during the idle window")
        for label in present:
            if label != EP:  # nothing else runs beside what `after` measures
                procs.stop(f"idle {label}")
        extra = after(pids)
    finally:
        for label in present:
            procs.stop(f"idle {label}")
    results: dict[str, Any] = dict.fromkeys(setups)
    for label in present:
        first, last = before[label], after_usage[label]
        results[label] = {
            "voluntary_switches": last.voluntary - first.voluntary,
            "involuntary_switches": last.involuntary - first.involuntary,
            "cpu_ms": rounded(last.cpu_ms - first.cpu_ms, 3),
            "rss_mb": rounded(last.rss_mb, 1),
        }
    return {"seconds": round(seconds, 2), "results": results}, extra


# -- 4. reaping as PID 1 -----------------------------------------------------------------


def bench_reap(peers: Peers, sizes: Sizes, tmp: Path) -> dict[str, Any]:
    child = [peers.python, "-I", "-S", str(tmp / "reap_child.py"), str(sizes.orphans)]
    setups: dict[str, tuple[list[str], dict[str, str]] | None] = {
        EP: ([peers.entrypoint, "run", "--", *child], worker_env(tmp, "reap")),
        TINI: ([peers.tini, "--", *child], clean_env()) if peers.tini else None,
    }
    results: dict[str, Any] = dict.fromkeys(setups)
    if peers.unshare is None or os.geteuid() != 0:
        return {"orphans": sizes.orphans, "rounds": 0, "results": results}
    present = [label for label, setup in setups.items() if setup]
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in present}
    for round_ in range(sizes.reap_rounds):
        order = present if round_ % 2 == 0 else present[::-1]
        for label in order:
            setup = setups[label]
            assert setup is not None
            # --kill-child: if unshare is killed (timeout), PID 1 and so the
            # whole namespace go with it.
            argv = [peers.unshare, "--pid", "--fork", "--kill-child", "--mount-proc", *setup[0]]
            result = run_quiet(argv, 90, env=setup[1], start_new_session=True)
            lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
            if not lines:
                raise RuntimeError(f"{label}: no report from the reaping child\n{result.stderr}")
            runs[label].append(json.loads(lines[-1]))
    for label in present:
        reports = runs[label]
        results[label] = {
            "median_ms": rounded(statistics.median(r["ms"] for r in reports)),
            "max_ms": rounded(max(r["ms"] for r in reports)),
            "reaper_cpu_ms": rounded(statistics.median(r["pid1_cpu_ms"] for r in reports)),
            "zombies_left": max(r["zombies_left"] for r in reports),
            "not_reaped": max(r["left"] for r in reports),
            "orphans_created": min(r["created"] for r in reports),
            "pid1": reports[0]["pid1"],
        }
    return {"orphans": sizes.orphans, "rounds": sizes.reap_rounds, "results": results}


# -- 5. restart after a clean exit -------------------------------------------------------


def bench_restart(peers: Peers, sizes: Sizes, tmp: Path, procs: Processes) -> dict[str, Any]:
    script = str(tmp / "restart_child.py")
    lifetime = str(sizes.child_lifetime)
    # The child's own start (interpreter start-up, up to its first line), measured
    # alone: part of every restart figure below, whoever the supervisor is.
    alone = Fifo(tmp / "restart-alone.fifo")
    own_start: list[float] = []
    try:
        for _ in range(10):
            sent = time.monotonic_ns()
            spawn_wait([peers.python, "-I", "-S", script, str(alone.path), "0"], {})
            line = alone.readline(5)
            own_start.append((int(line.split()[1]) - sent) / 1e6)
            alone.drain()
    finally:
        alone.close()
    fifos: dict[str, Fifo] = {}
    wanted: dict[str, int] = {}
    setups: dict[str, tuple[list[str], dict[str, str]]] = {}
    fifos[EP] = Fifo(tmp / "restart-ep.fifo")
    setups[EP] = (
        [
            peers.entrypoint,
            "run",
            "--",
            peers.python,
            "-I",
            "-S",
            script,
            str(fifos[EP].path),
            lifetime,
        ],
        worker_env(tmp, "restart", ENTRYPOINT_MIN_UPTIME="0"),
    )
    wanted[EP] = sizes.restarts
    if peers.supervisord:
        fifos[SUPD] = Fifo(tmp / "restart-supervisord.fifo")
        command = f"{peers.python} -I -S {script} {fifos[SUPD].path} {lifetime}"
        setups[SUPD] = (
            [peers.supervisord, "-c", str(supervisord_conf(tmp, "restart", command))],
            clean_env(),
        )
        wanted[SUPD] = sizes.supervisord_restarts
    samples: dict[str, list[float]] = {label: [] for label in setups}
    last_exit: dict[str, int | None] = dict.fromkeys(setups)
    try:
        # Both run at once: the machine's state is the same for both.
        for label, (argv, env) in setups.items():
            procs.start(f"restart {label}", argv, env)
        deadline = time.monotonic() + 15 + 1.5 * max(wanted.values()) * (1 + sizes.child_lifetime)
        while any(len(samples[label]) < wanted[label] for label in setups):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            select.select(list(fifos.values()), [], [], min(left, 1.0))
            for label, fifo in fifos.items():
                for line in fifo.drain():
                    kind, stamp = line.split()
                    if kind == "exit":
                        last_exit[label] = int(stamp)
                    elif (exited := last_exit[label]) is not None:
                        samples[label].append((int(stamp) - exited) / 1e6)
                        last_exit[label] = None
    finally:
        for label in setups:
            procs.stop(f"restart {label}")
        for fifo in fifos.values():
            fifo.close()
    results: dict[str, Any] = {EP: None, SUPD: None}
    for label, values in samples.items():
        if values:
            results[label] = {
                "median_ms": rounded(statistics.median(values)),
                "p90_ms": rounded(percentile(values, 90)),
                "samples": len(values),
            }
    return {
        "child_lifetime_s": sizes.child_lifetime,
        "child_own_start_ms": rounded(statistics.median(own_start)),
        "results": results,
    }


# -- 6. health and check -----------------------------------------------------------------


def launch(
    launcher: list[str], argv: list[str], env: Mapping[str, str]
) -> tuple[float, int, float]:
    """(wall ms, exit code, peak RSS MB) of argv, run by the small launcher."""
    result = run_quiet([*launcher, *argv], 60, env=dict(env))
    try:
        elapsed, code, maxrss = map(int, result.stdout.split())
    except ValueError:
        raise RuntimeError(f"the launcher failed on {argv}:\n{result.stderr[-2000:]}") from None
    return elapsed / 1e6, code, maxrss / 1024


def bench_cli(peers: Peers, sizes: Sizes, tmp: Path) -> dict[str, Any]:
    """`health` against the idle worker's state file; `check` probes Redis once."""
    env = worker_env(tmp, "idle", QUEUE_URL=REDIS_URL)
    launcher = [peers.python, "-I", "-S", str(tmp / "launcher.py")]
    commands = {
        "entrypoint health": [peers.entrypoint, "health"],
        "entrypoint check": [peers.entrypoint, "check", "--", "rq", "worker"],
        PY: [peers.python, "-c", "pass"],
        "true (floor of the RSS figure)": [shutil.which("true") or "/bin/true"],
    }
    samples: dict[str, list[tuple[float, int, float]]] = {label: [] for label in commands}
    labels = list(commands)
    for round_ in range(1 + sizes.cli_samples):
        shift = round_ % len(labels)
        for label in labels[shift:] + labels[:shift]:
            measured = launch(launcher, commands[label], env)
            if round_:
                samples[label].append(measured)
    results: dict[str, Any] = {}
    for label, runs in samples.items():
        results[label] = {
            "median_ms": rounded(statistics.median(r[0] for r in runs)),
            "p90_ms": rounded(percentile([r[0] for r in runs], 90)),
            "max_rss_mb": rounded(statistics.median(r[2] for r in runs), 1),
            "exit_codes": sorted({r[1] for r in runs}),
        }
    return {"samples": sizes.cli_samples, "queue_url": REDIS_URL, "results": results}


# -- restart policies, for the picture ---------------------------------------------------


def policy_delays(crashes: int = 10) -> dict[str, Any]:
    """Delay (s) before each restart of a child that crashes at once, `crashes` times.

    None: no restart at all (supervisord's FATAL state).
    """
    sys.path.insert(0, str(ROOT))
    from entrypoint.plan.modes import SupervisePlan, default_plan
    from entrypoint.plan.policy import History, decide

    plan = default_plan()
    assert isinstance(plan, SupervisePlan)

    def ours(rand: float) -> list[float]:
        policy, history, now, delays = plan.restart, History(), 0.0, []
        for _ in range(crashes):
            decision = decide(policy, history, exit_code=1, uptime=0.1, now=now, rand=rand)
            history = decision.history
            delays.append(round(decision.delay, 3))
            now += decision.delay + 0.1
        return delays

    pm2, previous = [], 0
    for _ in range(crashes):  # lib/God.js: floor(min(15000, previous * 1.5)) from the given value
        previous = 100 if not previous else math.floor(min(15000, previous * 1.5))
        pm2.append(previous / 1000)
    return {
        "entrypoint (longest, no jitter)": ours(0.0),
        "entrypoint (shortest, full jitter)": ours(1.0),
        "Docker restart=always": [min(0.1 * 2**n, 60.0) for n in range(crashes)],
        "Kubernetes CrashLoopBackOff": [0.0]
        + [min(10.0 * 2**n, 300.0) for n in range(crashes - 1)],
        "supervisord (startretries=3)": [1.0, 2.0, 3.0] + [None] * (crashes - 3),
        "PM2 exp_backoff_restart_delay=100": pm2,
    }


def plot(delays: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = {
        "entrypoint (longest, no jitter)": ("tab:green", "o", "-"),
        "Docker restart=always": ("tab:blue", "s", "-"),
        "Kubernetes CrashLoopBackOff": ("tab:purple", "^", "-"),
        "supervisord (startretries=3)": ("tab:red", "D", "-"),
        "PM2 exp_backoff_restart_delay=100": ("tab:orange", "v", "-"),
    }
    crashes = range(1, len(delays["Docker restart=always"]) + 1)
    figure, (per_crash, total) = plt.subplots(1, 2, figsize=(13, 6))
    for label, (colour, marker, line) in styles.items():
        values = delays[label]
        shown = [(n, v) for n, v in zip(crashes, values, strict=True) if v is not None]
        xs, ys = [n for n, _ in shown], [v for _, v in shown]
        name = "entrypoint (defaults)" if label.startswith("entrypoint") else label
        per_crash.plot(xs, ys, line, color=colour, marker=marker, label=name)
        cumulative = list(itertools.accumulate(ys))
        total.plot(xs, cumulative, line, color=colour, marker=marker, label=name)
        if len(shown) < len(values):
            gave_up = len(shown) + 1
            for axis, y in ((per_crash, ys[-1]), (total, cumulative[-1])):
                axis.plot([gave_up], [y], "x", color=colour, markersize=12, mew=3)
                axis.annotate(
                    "FATAL: no more restarts",
                    (gave_up, y),
                    textcoords="offset points",
                    xytext=(8, -4),
                    color=colour,
                    fontsize=8,
                )
    low = delays["entrypoint (shortest, full jitter)"]
    high = delays["entrypoint (longest, no jitter)"]
    per_crash.fill_between(
        list(crashes), low, high, color="tab:green", alpha=0.2, label="entrypoint jitter (80-100 %)"
    )
    for axis, title in (
        (per_crash, "Delay before the restart after crash n"),
        (total, "Time from the first crash to restart n"),
    ):
        axis.set_yscale("symlog", linthresh=0.1)
        axis.set_xticks(list(crashes))
        axis.set_xlabel("consecutive crash (the child exits at once, again and again)")
        axis.set_ylabel("seconds (symmetric log scale)")
        axis.set_title(title)
        axis.grid(visible=True, which="both", alpha=0.3)
    handles, labels = per_crash.get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=3, fontsize=9, frameon=False)
    figure.suptitle("Restart delays over 10 consecutive crashes (default settings)")
    figure.tight_layout(rect=(0, 0.1, 1, 1))
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


# -- budgets and the table ---------------------------------------------------------------


@dataclass(frozen=True)
class Budget:
    name: str
    target: str
    measured: str
    met: bool | None  # None: could not be measured (a peer is missing)


def _get(results: dict[str, Any], *path: str) -> Any:
    value: Any = results
    for key in path:
        if not isinstance(value, dict) or value.get(key) is None:
            return None
        value = value[key]
    return value


def budgets(r: dict[str, Any]) -> list[Budget]:
    found: list[Budget] = []

    def add(name: str, target: str, value: float | None, limit: float | None, text: str) -> None:
        if value is None or limit is None:
            found.append(Budget(name, target, "not measured", None))
        else:
            found.append(Budget(name, target, text, value <= limit))

    web, py = _get(r, "web", "results", EP, "median_ms"), _get(r, "web", "results", PY, "median_ms")
    add(
        "web overhead",
        "<= 1.5x python3 -c pass",
        web,
        py and 1.5 * py,
        f"{web} ms vs {py} ms ({web / py:.2f}x)" if web and py else "",
    )
    sig, tini = (
        _get(r, "signal", "results", EP, "p50_us"),
        _get(r, "signal", "results", TINI, "p50_us"),
    )
    add(
        "signal latency p50",
        "<= 1.5x tini's",
        sig,
        tini and 1.5 * tini,
        f"{sig} us vs {tini} us ({sig / tini:.2f}x)" if sig and tini else "",
    )
    p99 = _get(r, "signal", "results", EP, "p99_us")
    add("signal latency p99", "< 1 ms", p99, 999.999, f"{p99} us")
    wake = _get(r, "idle", "results", EP, "voluntary_switches")
    add("idle wakeups", f"0 in {_get(r, 'idle', 'seconds')} s", wake, 0, f"{wake}")
    rss, srss = _get(r, "idle", "results", EP, "rss_mb"), _get(r, "idle", "results", SUPD, "rss_mb")
    add(
        "supervising RSS",
        "<= 0.75x supervisord's",
        rss,
        srss and 0.75 * srss,
        f"{rss} MB vs {srss} MB ({rss / srss:.2f}x)" if rss and srss else "",
    )
    reap, treap = (
        _get(r, "reap", "results", EP, "median_ms"),
        _get(r, "reap", "results", TINI, "median_ms"),
    )
    zombies = _get(r, "reap", "results", EP, "zombies_left")
    add(
        "reaping 2,000 orphans",
        "<= 1.2x tini's, 0 zombies",
        reap,
        treap and (1.2 * treap if zombies == 0 else -1.0),
        f"{reap} ms vs {treap} ms ({reap / treap:.2f}x), {zombies} zombies"
        if reap and treap
        else "",
    )
    restart = _get(r, "restart", "results", EP, "median_ms")
    add("restart after a clean exit", "< 50 ms", restart, 49.999, f"{restart} ms")
    health = _get(r, "cli", "results", "entrypoint health", "median_ms")
    add("entrypoint health", "< 100 ms", health, 99.999, f"{health} ms")
    return found


def fmt(value: Any, width: int = 10) -> str:
    if value is None:
        text = "n/a"
    elif isinstance(value, float):
        text = f"{value:.2f}" if abs(value) < 1000 else f"{value:.0f}"
    else:
        text = str(value)
    return text.rjust(width)


def table(title: str, columns: list[tuple[str, str]], rows: dict[str, Any]) -> str:
    """`columns`: (heading, key) pairs read from each row's dict."""
    widths = [max(10, len(heading)) + 2 for heading, _ in columns]
    first = max([26, *(len(label) + 2 for label in rows)])
    lines = [
        title,
        "  "
        + "".ljust(first)
        + "".join(h.rjust(w) for (h, _), w in zip(columns, widths, strict=True)),
    ]
    for label, row in rows.items():
        cells = "".join(
            fmt(row.get(key) if row else None, w)
            for (_, key), w in zip(columns, widths, strict=True)
        )
        lines.append("  " + label.ljust(first) + cells)
    return "\n".join(lines)


def render(r: dict[str, Any]) -> str:
    meta = r["meta"]
    kind = "quick" if meta["quick"] else "full"
    parts = [
        (
            f"entrypoint benchmarks: {meta['cpus']} CPUs, {meta['kernel']}, "
            f"{meta['versions'].get('python', '')}, {kind} run"
        ),
        table(
            f"1. start to exec, web mode (median of {r['web']['samples']}, ms)",
            [("median ms", "median_ms"), ("p90 ms", "p90_ms"), ("x python", "vs_python")],
            r["web"]["results"],
        ),
        table(
            f"2. signal forwarding, kill() to the child ({r['signal']['signals']} signals, us)",
            [
                ("p50 us", "p50_us"),
                ("p90 us", "p90_us"),
                ("p99 us", "p99_us"),
                ("max us", "max_us"),
            ],
            r["signal"]["results"],
        ),
        table(
            f"3. idle supervising process over {r['idle']['seconds']} s, child sleeping",
            [
                ("wakeups", "voluntary_switches"),
                ("preempted", "involuntary_switches"),
                ("CPU ms", "cpu_ms"),
                ("RSS MB", "rss_mb"),
            ],
            r["idle"]["results"],
        ),
        table(
            f"4. reaping {r['reap']['orphans']} orphans as PID 1 "
            f"(median of {r['reap']['rounds']} rounds, ms)",
            [
                ("median ms", "median_ms"),
                ("max ms", "max_ms"),
                ("PID 1 CPU ms", "reaper_cpu_ms"),
                ("zombies", "zombies_left"),
            ],
            r["reap"]["results"],
        ),
        table(
            "5. restart after a clean exit: child exit to next child start (ms)",
            [("median ms", "median_ms"), ("p90 ms", "p90_ms"), ("samples", "samples")],
            r["restart"]["results"],
        )
        + f"\n  (the child's own start, interpreter up to its first line: "
        f"{r['restart']['child_own_start_ms']} ms, included above)",
        table(
            f"6. CLI with one Redis dependency (median of {r['cli']['samples']})",
            [("median ms", "median_ms"), ("p90 ms", "p90_ms"), ("max RSS MB", "max_rss_mb")],
            r["cli"]["results"],
        ),
        "budgets",
    ]
    for budget in r["budgets"]:
        verdict = {True: "met", False: "MISSED", None: "n/a"}[budget["met"]]
        parts[-1] += (
            f"\n  {verdict:7} {budget['name']:28} target {budget['target']:28} "
            f"measured {budget['measured']}"
        )
    if r["meta"]["missing"]:
        parts.append("missing: " + "; ".join(r["meta"]["missing"]))
    return "\n\n".join(parts)


# -- main ----------------------------------------------------------------------------------


SECTIONS = ("web", "signal", "idle", "reap", "restart")  # "idle" includes "cli"


def run(
    sizes: Sizes,
    *,
    quick: bool,
    plot_path: Path | None,
    project: Path = ROOT,
    only: Sequence[str] = SECTIONS,
) -> dict[str, Any]:
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="entrypoint-bench-"))
    procs = Processes(tmp)
    empty: dict[str, Any] = {"results": {}}
    results: dict[str, Any] = {
        "web": {"samples": 0, **empty},
        "signal": {"signals": 0, **empty},
        "idle": {"seconds": 0, **empty},
        "cli": {"samples": 0, **empty},
        "reap": {"orphans": 0, "rounds": 0, **empty},
        "restart": {"child_own_start_ms": None, **empty},
    }
    try:
        for name, text in (
            ("signal_child.py", SIGNAL_CHILD),
            ("restart_child.py", RESTART_CHILD),
            ("reap_child.py", REAP_CHILD),
            ("launcher.py", LAUNCHER),
        ):
            (tmp / name).write_text(text)
        peers = find_peers(tmp, project, plot=plot_path is not None)
        if not redis_up():
            peers.missing.append(f"Redis: nothing answers on {REDIS_URL} (check fails with 69)")
        if "web" in only:
            log("1/6 web mode: start to exec")
            results["web"] = bench_web(peers, sizes)
        if "signal" in only:
            log("2/6 signal forwarding")
            results["signal"] = bench_signals(peers, sizes, tmp, procs)
        if "idle" in only:
            log(f"3/6 idle for {sizes.idle_seconds} s (then 6/6 health and check)")
            results["idle"], results["cli"] = bench_idle(
                peers, sizes, tmp, procs, lambda _pids: bench_cli(peers, sizes, tmp)
            )
        if "reap" in only:
            log("4/6 reaping orphans as PID 1")
            results["reap"] = bench_reap(peers, sizes, tmp)
        if "restart" in only:
            log("5/6 restart after a clean exit")
            results["restart"] = bench_restart(peers, sizes, tmp, procs)
        results["restart_policies"] = policy_delays()
        if plot_path is not None:
            if plot(results["restart_policies"], plot_path):
                log(f"wrote {plot_path}")
            else:
                peers.missing.append("matplotlib: not importable, no picture written")
        results["meta"] = {
            "quick": quick,
            "cpus": os.cpu_count(),
            "kernel": f"{platform.system()} {platform.release()}",
            "versions": peers.versions,
            "missing": peers.missing,
            "sizes": asdict(sizes),
            "sections": list(only),
            "duration_s": round(time.monotonic() - started, 1),
        }
        results["budgets"] = [asdict(b) for b in budgets(results)]
        return results
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few samples: a smoke test")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the results as JSON")
    parser.add_argument("--plot", type=Path, metavar="FILE", help="write the restart-delay PNG")
    parser.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help=f"comma-separated sections to run, of {','.join(SECTIONS)} (default: all)",
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
    if unknown := sorted(set(only) - set(SECTIONS)):
        parser.error(f"unknown section(s): {', '.join(unknown)}")
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


if __name__ == "__main__":
    sys.exit(main())
