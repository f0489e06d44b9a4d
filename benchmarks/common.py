"""What every measure shares: the labels, the run sizes, statistics, clean environments,
spawning and waiting, named pipes, and the accounting of long-running processes.

Nothing here imports the project: the entrypoint measured is always the throwaway
virtualenv's console script (peers.py), never this checkout.
"""

from __future__ import annotations

import contextlib
import math
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
REDIS_URL = "redis://127.0.0.1:6379/0"

# The labels of every peer, as they appear in the table and the JSON.
EP = "entrypoint"
EP_WARN = "entrypoint (log warning)"
EP_REDIS = "entrypoint (+ Redis dep.)"
PY = "python3 -c pass"
TINI = "tini"
DUMB = "dumb-init"
SH = "sh -c true"
SUPD = "supervisord"
HONCHO = "honcho"

# Variables that steer the entrypoint (or a Python) and must not leak in from outside.
_STEERING = (
    "MODE",
    "QUEUE_URL",
    "QUEUE_CONNECTION",
    "WEB_CMD",
    "WORKER_CMD",
    "SCHEDULER_CMD",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
)
_STEERING_PREFIXES = ("ENTRYPOINT_", "PYTHON", "REDIS_", "DB_")


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
    importtime_runs: int
    worker_starts: int
    memory_samples: int
    scrapes: int


FULL = Sizes(
    web_samples=40,
    signals=250,
    idle_seconds=10.0,
    orphans=2000,
    reap_rounds=3,
    restarts=30,
    supervisord_restarts=5,
    child_lifetime=0.2,
    cli_samples=40,
    importtime_runs=5,
    worker_starts=20,
    memory_samples=200,
    scrapes=1000,
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
    importtime_runs=1,
    worker_starts=3,
    memory_samples=3,
    scrapes=30,
)


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
    """This environment without what steers the entrypoint or Python, plus `extra`.

    Dropped: ENTRYPOINT_*, PYTHON*, REDIS_*, DB_*, MODE, QUEUE_*, *_CMD, and an
    inherited NOTIFY_SOCKET (it would be passed on upstream).
    """
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(_STEERING_PREFIXES) and name not in _STEERING
    }
    env.update(extra)
    return env


def worker_env(tmp: Path, name: str, **extra: str) -> dict[str, str]:
    return clean_env(
        MODE="worker",
        ENTRYPOINT_STATE_FILE=str(tmp / f"state-{name}.json"),
        ENTRYPOINT_LOG_FORMAT="json",
        ENTRYPOINT_STOP_TIMEOUT="3",
        **extra,
    )


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


def redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=2):
            return True
    except OSError:
        return False


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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


def stat_fields(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/PID/stat (after the command name), or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _identity(pid: int) -> tuple[int, str] | None:
    fields = stat_fields(pid)
    return None if fields is None else (pid, fields[19])


def descendants(pid: int) -> list[int]:
    """Every living descendant of `pid`, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := stat_fields(int(entry))) is not None:
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


def kill_tree(tree: list[tuple[int, str]]) -> None:
    """SIGKILL each (pid, start time) still alive as that same process, not a recycled pid."""
    for pid, started in tree:
        if _identity(pid) == (pid, started):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def tree_of(pid: int) -> list[tuple[int, str]]:
    return [ident for child in descendants(pid) if (ident := _identity(child))]


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
        if proc is not None:
            stop(proc, timeout)

    def stop_all(self) -> None:
        for name in list(self.running):
            self.stop(name)


def stop(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """TERM, then KILL to `proc` and every descendant of it still alive."""
    tree = tree_of(proc.pid)
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
    tree += tree_of(proc.pid)
    if proc.poll() is None:
        proc.kill()
    kill_tree(tree)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout)


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
        fields = stat_fields(pid) or []
        cpu_ms = (int(fields[11]) + int(fields[12])) * 1000 / CLK_TCK if fields else math.nan
    rss_kb = 0
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                rss_kb = int(line.split()[1])
    return Usage(voluntary, involuntary, cpu_ms, rss_kb / 1024)
