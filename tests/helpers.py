"""Running the entrypoint as a real process, and waiting for what it says."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CHILD = [sys.executable, str(ROOT / "tests" / "child.py")]
ENTRYPOINT = [sys.executable, "-m", "entrypoint"]


def sleep_until(condition: Callable[[], Any], timeout: float, interval: float = 0.01) -> Any:
    """Wait for `condition()` to be truthy; return it, or raise TimeoutError at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        time.sleep(interval)


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    """Whether `condition()` became true within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def zombies_of(pid: int) -> list[int]:
    """The zombie children of `pid`: exited, and not (yet) reaped by it."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[-1].split()
            except OSError:
                continue
            if fields[0] == "Z" and int(fields[1]) == pid:
                found.append(int(entry))
    return found


def exited(pid: int) -> bool:
    """Whether `pid` has ended: gone from /proc, or a zombie waiting to be reaped."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def gone(pid: int) -> bool:
    """Whether `pid` is gone from /proc altogether: ended and reaped."""
    return not os.path.exists(f"/proc/{pid}")


def orphan_pids(run: Running) -> list[int]:
    """The pids the test child printed on its `orphans:` line."""
    line = run.wait_stdout(r"^orphans: ([\d ]+)$")[0].group(1)
    return [int(pid) for pid in line.split()]


def base_env(**extra: str) -> dict[str, str]:
    """The test's environment without MODE/ENTRYPOINT_*/QUEUE_* from outside, plus `extra`."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("ENTRYPOINT_")
        and name not in ("MODE", "QUEUE_URL", "QUEUE_CONNECTION")
    }
    env["PYTHONPATH"] = str(ROOT)
    # The venv's scripts (rq, entrypoint) first, as an activated venv would have them.
    env["PATH"] = os.pathsep.join((os.path.dirname(sys.executable), env.get("PATH", "")))
    env["ENTRYPOINT_LOG_FORMAT"] = "json"
    env.update(extra)
    return env


class Running:
    """A process whose stdout and stderr lines are collected as they come."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], **popen: Any) -> None:
        self.proc = subprocess.Popen(
            list(argv),
            env=dict(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            **popen,
        )
        self.started = time.monotonic()
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._changed = threading.Condition()
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.stdout), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.stderr), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self, stream: Any, lines: list[str]) -> None:
        for line in stream:
            with self._changed:
                lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def _wait_for(self, find: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = find()
                if found:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"{what} not seen within {timeout} s\n--- stdout\n"
                        + "\n".join(self.stdout)
                        + "\n--- stderr\n"
                        + "\n".join(self.stderr)
                    )
                self._changed.wait(min(left, 0.1))

    def wait_stdout(self, pattern: str, timeout: float = 10, count: int = 1) -> list[re.Match[str]]:
        regex = re.compile(pattern)

        def find() -> list[re.Match[str]] | None:
            matches = [m for m in map(regex.search, self.stdout) if m]
            return matches if len(matches) >= count else None

        result: list[re.Match[str]] = self._wait_for(find, timeout, f"stdout {pattern!r} x{count}")
        return result

    def wait_stderr(self, pattern: str, timeout: float = 10, count: int = 1) -> list[re.Match[str]]:
        regex = re.compile(pattern)

        def find() -> list[re.Match[str]] | None:
            matches = [m for m in map(regex.search, self.stderr) if m]
            return matches if len(matches) >= count else None

        result: list[re.Match[str]] = self._wait_for(find, timeout, f"stderr {pattern!r} x{count}")
        return result

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        found = []
        for line in list(self.stderr):
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and (name is None or event.get("event") == name):
                found.append(event)
        return found

    def wait_event(self, name: str, timeout: float = 10, count: int = 1) -> list[dict[str, Any]]:
        def find() -> list[dict[str, Any]] | None:
            events = self.events(name)
            return events if len(events) >= count else None

        result: list[dict[str, Any]] = self._wait_for(find, timeout, f"event {name} x{count}")
        return result

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 10) -> int:
        code = self.proc.wait(timeout)
        for reader in self._readers:
            reader.join(timeout)
        return code

    def kill(self) -> None:
        """SIGKILL the process and every descendant (a killed supervisor leaves orphans)."""
        for pid in [*descendants(self.proc.pid), self.proc.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(5)
        for reader in self._readers:
            reader.join(5)

    def __enter__(self) -> Running:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.kill()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()


def descendants(pid: int) -> list[int]:
    """Every living descendant of `pid`, from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    ppid = int(handle.read().rsplit(")", 1)[-1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def entrypoint(*args: str, env: Mapping[str, str] | None = None, **popen: Any) -> Running:
    return Running([*ENTRYPOINT, *args], env if env is not None else base_env(), **popen)


def run_entrypoint(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 20, **popen: Any
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ENTRYPOINT, *args],
        env=dict(env if env is not None else base_env()),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **popen,
    )


def modules_after(code: str) -> set[str]:
    """The names in sys.modules once a fresh interpreter has run `code` (from the checkout)."""
    result = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print(' '.join(sorted(sys.modules)))"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    )
    return set(result.stdout.split())
