"""What liveness costs: nothing when off; with a watchdog, the wakeups its heartbeats cause.

Voluntary context switches of the supervisor (/proc/PID/status) count its
wakeups: an idle supervisor blocks in one select() and makes none. The
measurement IS a few idle seconds, so these tests sleep on purpose.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import CHILD, Running
from tests.liveness_helpers import Worker, child_pid, imported_modules, voluntary_switches

IDLE_S = 5.0
LIVENESS_MODULES = {"entrypoint.runtime.notify", "entrypoint.runtime.liveness"}


def idle_switches(run: Running, seconds: float = IDLE_S) -> int:
    time.sleep(0.3)  # let the start-up settle before the measurement begins
    before = voluntary_switches(run.pid)
    time.sleep(seconds)  # the measurement
    return voluntary_switches(run.pid) - before


@pytest.mark.parametrize("notify", [False, True], ids=["off", "notify-silent-child"])
def test_no_wakeup_when_idle_and_no_import_when_off(tmp_path: Path, notify: bool) -> None:
    worker = Worker(tmp_path, **({"ENTRYPOINT_NOTIFY": "1"} if notify else {}))
    argv = [sys.executable, "-X", "importtime", "-m", "entrypoint", "run", "--"]
    args = ["--send", "0:READY=1\\nSTATUS=idle"] if notify else []
    with Running([*argv, *CHILD, *args], worker.env) as run:
        child_pid(run)
        if notify:
            run.wait_event("child_status")
        switches = idle_switches(run)
        run.signal(signal.SIGTERM)
        assert run.wait() == 0
    imported = imported_modules(run.stderr)
    assert "entrypoint.runtime.supervisor" in imported  # the measurement sees our imports
    if notify:
        assert imported >= LIVENESS_MODULES  # the control: on, they are there
    else:
        assert not imported & LIVENESS_MODULES
    assert switches == 0


@pytest.mark.parametrize("source", ["notify", "file"])
def test_with_a_1s_watchdog_the_wakeups_are_those_of_the_heartbeats(
    tmp_path: Path, source: str
) -> None:
    beat = tmp_path / "beat"
    if source == "notify":
        worker = Worker(tmp_path, ENTRYPOINT_NOTIFY="1", ENTRYPOINT_WATCHDOG_TIMEOUT="1")
        args = ["--watchdog-every", "0.5"]  # half the timeout, as libsystemd clients ping
        # Each datagram wakes the loop once, and its state-file write may cost one
        # more on a journaling filesystem (ext4 /tmp: 2 per beat, tmpfs: 1); nothing else.
        limit = 2 * (int(IDLE_S / 0.5) + 1) + 2
    else:
        worker = Worker(
            tmp_path, ENTRYPOINT_HEARTBEAT_FILE=str(beat), ENTRYPOINT_WATCHDOG_TIMEOUT="1"
        )
        args = ["--heartbeat-file", str(beat), "--every", "0.5"]
        # No event for a touch: the loop wakes at each deadline, stat()s, sleeps again.
        limit = 2 * int(IDLE_S / 1.0) + 2
    with worker.run(*args) as run:
        child_pid(run)
        switches = idle_switches(run)
        run.signal(signal.SIGTERM)
        assert run.wait() == 0
    print(f"\n{source}, 1 s watchdog, heartbeat every 0.5 s: {switches} wakeups in {IDLE_S:g} s")
    assert not run.events("watchdog_expired")
    assert 0 < switches <= limit
