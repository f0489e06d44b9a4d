"""A supervised worker with its own state file, and what the liveness tests read of it."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.helpers import CHILD, Running, base_env, entrypoint, run_entrypoint, sleep_until
from tests.probe_helpers import accepts, free_port, require_binary, stop_process

# Small enough to keep the tests short, large enough for a loaded 2-core machine.
DEFAULTS = {
    "MODE": "worker",
    "ENTRYPOINT_STOP_TIMEOUT": "5",
    "ENTRYPOINT_BACKOFF_INITIAL": "0.1",
    "ENTRYPOINT_BACKOFF_MAX": "0.4",
}


class Worker:
    """`entrypoint run -- tests/child.py ...` in worker mode, and `health`/`status` beside it.

    Both get the same environment, so that `health` reads this worker's state file.
    """

    def __init__(self, tmp: Path, **env: str) -> None:
        self.tmp = tmp
        self.state_file = tmp / "state.json"
        self.env = base_env(**{**DEFAULTS, "ENTRYPOINT_STATE_FILE": str(self.state_file), **env})

    def run(self, *child_args: str | bytes, command: list[str] | None = None) -> Running:
        argv = command if command is not None else [*CHILD, *map(os.fsdecode, child_args)]
        return entrypoint("run", "--", *argv, env=self.env)

    def health(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_entrypoint("health", *args, env=self.env)

    def status(self) -> dict[str, Any]:
        result = run_entrypoint("status", "--json", env=self.env)
        document: dict[str, Any] = json.loads(result.stdout)
        return document

    def state(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}
        return data


def child_pid(run: Running, timeout: float = 15, count: int = 1) -> int:
    """The pid the `count`-th child said `ready` with."""
    return int(run.wait_stdout(r"^ready \(pid: (\d+)\)", timeout, count)[count - 1].group(1))


def child_env(run: Running, name: str, timeout: float = 15) -> str | None:
    """What the child printed for `--env NAME`: its value, or None when unset."""
    match = run.wait_stdout(rf"^env {name}(=(.*)| unset) \(pid: \d+\)$", timeout)[-1]
    return match.group(2) if match.group(1).startswith("=") else None


def at(event: dict[str, Any]) -> float:
    """An event's timestamp, as time.time() seconds."""
    return datetime.fromisoformat(event["timestamp"]).timestamp()


def notify_address(run: Running) -> bytes:
    """The abstract address of the supervisor's notify socket, from the child's `--env`."""
    value = child_env(run, "NOTIFY_SOCKET")
    assert value is not None
    assert value.startswith("@"), value
    return b"\0" + os.fsencode(value[1:])


def send_datagram(address: bytes, datagram: bytes) -> None:
    """One datagram to the notify socket from this process (NotifyAccess=all: anyone may)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(datagram, address)


def voluntary_switches(pid: int) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("voluntary_ctxt_switches"):
                return int(line.split()[1])
    raise AssertionError("no voluntary_ctxt_switches")


def one_line(text: str) -> str:
    """The single line of `text` (an assertion error when there are more, or none)."""
    lines = text.splitlines()
    assert len(lines) == 1, text
    return lines[0]


IMPORTED = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s+(\S.*)$")


def imported_modules(stderr: list[str]) -> set[str]:
    """The modules a `python -X importtime` run imported, from its stderr."""
    return {m.group(1).strip() for m in map(IMPORTED.match, stderr) if m}


class PrivateRedis:
    """A redis-server of this test's own on a free port, to stop and start at will."""

    def __init__(self, tmp: Path) -> None:
        self.binary = require_binary("redis-server")
        self.tmp = tmp
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, password: str | None = None) -> float:
        """Start it; return when it accepts connections (time.time())."""
        argv = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no", "--dir", str(self.tmp)]
        if password is not None:
            argv += ["--requirepass", password]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        sleep_until(lambda: accepts(self.port) or self.proc.poll() is not None, 15)  # type: ignore[union-attr]
        assert self.proc.poll() is None, "redis-server did not start"
        return time.time()

    def stop(self) -> float:
        """Stop it (SIGTERM: it closes its listener, then every client); return when gone."""
        assert self.proc is not None
        stop_process(self.proc)
        self.proc = None
        return time.time()

    def url(self, password: str | None = None) -> str:
        auth = f":{password}@" if password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def close(self) -> None:
        """Stop it whatever state it is in (a SIGSTOPped one too)."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)
            self.stop()
