"""Liveness and readiness through the real CLI: the notify socket, heartbeats, the watchdog.

Every test runs `entrypoint run` as a process over tests/child.py (or a real
sd_notify client) and reads what it logs, its state file and `entrypoint
health`/`status`. Timings are printed (pytest -s), never asserted beyond the
bounds the contract states.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import CHILD, ROOT, sleep_until
from tests.liveness_helpers import (
    Worker,
    at,
    child_env,
    child_pid,
    notify_address,
    send_datagram,
)
from tests.servers import missing

NODE_DIR = ROOT / "tests" / "node"
NOTIFY_ENV = "NOTIFY_SOCKET,WATCHDOG_USEC,WATCHDOG_PID"


def require_systemd_notify() -> str:
    path = shutil.which("systemd-notify")
    if path is None:
        missing("systemd-notify is not installed (Debian package systemd)")
    assert path is not None
    return path


def require_libsystemd() -> None:
    try:
        ctypes.CDLL("libsystemd.so.0")
    except OSError:
        missing("libsystemd.so.0 is not installed (Debian package libsystemd0)")


def require_node_sd_notify() -> str:
    node = shutil.which("node")
    if node is None:
        missing("node is not installed")
    if not (NODE_DIR / "node_modules" / "sd-notify" / "build" / "Release" / "notify.node").exists():
        missing("tests/node/node_modules is missing: npm ci --prefix tests/node --nodedir=/usr")
    assert node is not None
    return node


@pytest.fixture
def frozen() -> Iterator[list[int]]:
    """Pids the test SIGSTOPs; each gets SIGCONT at the end, whatever happened."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


# --- the child's environment ---------------------------------------------------------

INHERITED = {"NOTIFY_SOCKET": "/run/outer/notify", "WATCHDOG_USEC": "123", "WATCHDOG_PID": "1"}


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"ENTRYPOINT_NOTIFY": "0"},
        {"ENTRYPOINT_NOTIFY": ""},
        {"ENTRYPOINT_NOTIFY": "off"},
        {"ENTRYPOINT_HEARTBEAT_FILE": "{tmp}/beat", "ENTRYPOINT_WATCHDOG_TIMEOUT": "30"},
    ],
    ids=["unset", "0", "empty", "off", "heartbeat-file"],
)
def test_without_notify_the_childs_environment_is_untouched(
    tmp_path: Path, extra: dict[str, str]
) -> None:
    settings = {name: value.format(tmp=tmp_path) for name, value in extra.items()}
    worker = Worker(tmp_path, **INHERITED, **settings)
    with worker.run("--env", NOTIFY_ENV) as run:
        child_pid(run)
        for name, value in INHERITED.items():
            assert child_env(run, name) == value
        run.signal(signal.SIGTERM)
        assert run.wait() == 0


@pytest.mark.parametrize("on", ["1", "true", "yes", "on", " ON "])
def test_notify_gives_the_child_the_entrypoints_own_socket(tmp_path: Path, on: str) -> None:
    worker = Worker(tmp_path, ENTRYPOINT_NOTIFY=on, **INHERITED)
    with worker.run("--env", NOTIFY_ENV) as run:
        child_pid(run)
        value = child_env(run, "NOTIFY_SOCKET")
        assert value is not None
        assert value.startswith(f"@entrypoint/notify/{run.pid}/"), value
        # No watchdog: the inherited ones speak of the entrypoint's manager, not of it.
        assert child_env(run, "WATCHDOG_USEC") is None
        assert child_env(run, "WATCHDOG_PID") is None
        run.signal(signal.SIGTERM)
        assert run.wait() == 0


LIBSYSTEMD_SAYS = """
import ctypes, os, sys
usec = ctypes.c_uint64(0)
enabled = ctypes.CDLL("libsystemd.so.0").sd_watchdog_enabled(0, ctypes.byref(usec))
print(f"sd_watchdog_enabled {enabled} {usec.value} (pid: {os.getpid()})", flush=True)
os.execv(sys.argv[1], sys.argv[1:])  # the same pid: still its watchdog
"""


def test_watchdog_usec_and_pid_as_systemd_sets_them(tmp_path: Path) -> None:
    require_libsystemd()
    worker = Worker(tmp_path, ENTRYPOINT_NOTIFY="1", ENTRYPOINT_WATCHDOG_TIMEOUT="2.5", **INHERITED)
    command = [sys.executable, "-c", LIBSYSTEMD_SAYS, *CHILD, "--env", NOTIFY_ENV]
    with worker.run(command=[*command, "--watchdog-every", "0.5"]) as run:
        pid = child_pid(run)
        assert child_env(run, "WATCHDOG_USEC") == "2500000"
        assert child_env(run, "WATCHDOG_PID") == str(pid)
        said = run.wait_stdout(r"^sd_watchdog_enabled (-?\d+) (\d+) \(pid: (\d+)\)")[0]
        assert said.groups() == ("1", "2500000", str(pid))  # libsystemd: the watchdog is mine
        run.signal(signal.SIGTERM)
        assert run.wait() == 0
        assert not run.events("watchdog_expired")


NODE_WORKER = """
const notify = require('sd-notify')
console.log(`watchdogInterval ${notify.watchdogInterval()} (pid: ${process.pid})`)
notify.ready()
setInterval(() => notify.watchdog(), 300)
process.on('SIGTERM', () => process.exit(0))
"""


def test_node_sd_notify_sees_its_watchdog(tmp_path: Path) -> None:
    node = require_node_sd_notify()
    worker = Worker(tmp_path, ENTRYPOINT_NOTIFY="1", ENTRYPOINT_WATCHDOG_TIMEOUT="1.5")
    command = ["sh", "-c", f'cd "{NODE_DIR}" && exec "$0" -e "$1"', node, NODE_WORKER]
    with worker.run(command=command) as run:
        said = run.wait_stdout(r"^watchdogInterval (\d+) \(pid: (\d+)\)")[0]
        assert said.group(1) == "1500"  # milliseconds: sd_watchdog_enabled() said yes
        ready = run.wait_event("child_ready")[0]
        assert ready["sender_pid"] == int(said.group(2)) == run.events("child_started")[0]["pid"]
        sleep_until(lambda: worker.state().get("heartbeat"), 10)
        run.signal(signal.SIGTERM)
        assert run.wait() == 0
        assert not run.events("watchdog_expired")


# --- what the child says -------------------------------------------------------------


def test_ready_and_status_reach_the_events_the_state_file_and_status(tmp_path: Path) -> None:
    worker = Worker(tmp_path, ENTRYPOINT_NOTIFY="1")
    args = ["--send", "0:READY=1\\nSTATUS=Waiting for jobs", "--send", "0.3:STATUS=busy"]
    with worker.run(*args) as run:
        pid = child_pid(run)
        assert run.wait_event("child_ready")[0]["sender_pid"] == pid
        statuses = run.wait_event("child_status", count=2)
        assert [e["status"] for e in statuses] == ["Waiting for jobs", "busy"]
        sleep_until(lambda: worker.state().get("status") == "busy", 5)
        assert worker.state()["ready"] is True
        document = worker.status()
        assert (document["ready"], document["status"]) == (True, "busy")
        line = worker.health().stdout.strip()
        assert "ready" in line
        assert "status 'busy'" in line
        run.signal(signal.SIGTERM)
        assert run.wait() == 0


def test_systemd_notify_ready_as_the_worker(tmp_path: Path) -> None:
    binary = require_systemd_notify()
    worker = Worker(tmp_path, ENTRYPOINT_NOTIFY="1")
    script = '"$0" --ready --status="shell worker up"; echo "systemd-notify exited $?"; exec "$@"'
    with worker.run(command=["sh", "-c", script, binary, *CHILD]) as run:
        # 0: its BARRIER=1 was answered (the passed fd closed); 1 after 5 s otherwise.
        run.wait_stdout(r"^systemd-notify exited 0$")
        pid = child_pid(run)
        # systemd-notify speaks for its parent: the shell, which then became the child.
        assert run.wait_event("child_ready")[0]["sender_pid"] == pid
        assert run.wait_event("child_status")[0]["status"] == "shell worker up"
        assert worker.health("--ready").returncode == 0
        run.signal(signal.SIGTERM)
        assert run.wait() == 0
    assert not run.events("notify_ignored")


SDNOTIFY_WORKER = """
import os, signal, sys, threading, time
import sdnotify

signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # taken by sigwait below
notifier = sdnotify.SystemdNotifier(debug=True)
notifier.notify("READY=1\\nSTATUS=python worker up")

def beat():
    while True:
        notifier.notify("WATCHDOG=1")
        time.sleep(0.25)

threading.Thread(target=beat, daemon=True).start()
print(f"ready (pid: {os.getpid()})", flush=True)
signal.sigwait({signal.SIGTERM})
notifier.notify("STOPPING=1")
"""


def test_python_sdnotify_as_the_worker(tmp_path: Path) -> None:
    worker = Worker(tmp_path, ENTRYPOINT_NOTIFY="1", ENTRYPOINT_WATCHDOG_TIMEOUT="1")
    with worker.run(command=[sys.executable, "-c", SDNOTIFY_WORKER]) as run:
        pid = child_pid(run)
        assert run.wait_event("child_ready")[0]["sender_pid"] == pid
        assert run.wait_event("child_status")[0]["status"] == "python worker up"
        sleep_until(lambda: worker.health("--ready").returncode == 0, 10)
        beat = sleep_until(lambda: worker.state().get("heartbeat"), 10)
        sleep_until(lambda: worker.state().get("heartbeat", 0) > beat + 2.5, 10)  # timeouts later
        assert not run.events("watchdog_expired")
        run.signal(signal.SIGTERM)
        assert run.wait() == 0
    assert run.wait_event("child_stopping")
    assert [e["pid"] for e in run.events("child_started")] == [pid]


def test_an_inherited_notify_socket_gets_ready_status_and_stopping(tmp_path: Path) -> None:
    upstream = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    name = f"entrypoint-test-upstream/{os.getpid()}/{os.urandom(4).hex()}"
    upstream.bind("\0" + name)
    upstream.settimeout(10)
    worker = Worker(tmp_path, ENTRYPOINT_NOTIFY="1", NOTIFY_SOCKET="@" + name)
    args = ["--env", "NOTIFY_SOCKET", "--send", "0:READY=1\\nSTATUS=up\\nWATCHDOG=1"]
    with upstream, worker.run(*args, "--send-on-term", "STOPPING=1") as run:
        assert child_env(run, "NOTIFY_SOCKET") != "@" + name  # the child speaks to us
        assert upstream.recv(4096) == b"READY=1\nSTATUS=up"  # WATCHDOG=1 is ours alone
        run.signal(signal.SIGTERM)
        assert upstream.recv(4096) == b"STOPPING=1"
        assert run.wait() == 0


# --- the watchdog --------------------------------------------------------------------

JOB_S = 6.0  # six watchdog timeouts long


@pytest.mark.parametrize("source", ["notify", "file"])
def test_a_worker_that_heartbeats_through_a_long_job_is_never_restarted(
    tmp_path: Path, source: str
) -> None:
    beat = tmp_path / "beat"
    if source == "notify":
        worker = Worker(tmp_path, ENTRYPOINT_NOTIFY="1", ENTRYPOINT_WATCHDOG_TIMEOUT="1")
        args = ["--watchdog-every", "0.3"]
    else:
        worker = Worker(
            tmp_path, ENTRYPOINT_HEARTBEAT_FILE=str(beat), ENTRYPOINT_WATCHDOG_TIMEOUT="1"
        )
        args = ["--heartbeat-file", str(beat), "--every", "0.3"]
    with worker.run(*args, "--job", str(JOB_S)) as run:
        pid = child_pid(run)
        run.wait_stdout(r"^job started")
        answers = []
        until = time.monotonic() + JOB_S - 1.5  # health while the job surely runs
        while time.monotonic() < until:
            answers.append(worker.health().returncode)
        run.wait_stdout(r"^job finished", timeout=JOB_S + 10)
        exited = run.wait_event("child_exited")[0]
        assert (exited["pid"], exited["exit_code"], exited["reason"]) == (pid, 0, "exit")
        assert exited["uptime_s"] >= JOB_S
        assert not run.events("watchdog_expired")
        assert answers
        assert set(answers) == {0}, answers
        run.signal(signal.SIGTERM)
        run.wait()


@pytest.mark.parametrize("source", ["notify", "file"])
def test_a_frozen_worker_is_restarted_within_the_timeout_plus_the_grace(
    tmp_path: Path, source: str, frozen: list[int]
) -> None:
    timeout, grace = 1.0, 1.0
    beat = tmp_path / "beat"
    settings = {"ENTRYPOINT_WATCHDOG_TIMEOUT": str(timeout), "ENTRYPOINT_STOP_TIMEOUT": str(grace)}
    if source == "notify":
        worker = Worker(tmp_path, ENTRYPOINT_NOTIFY="1", **settings)
        args = ["--watchdog-every", "0.25"]
    else:
        worker = Worker(tmp_path, ENTRYPOINT_HEARTBEAT_FILE=str(beat), **settings)
        args = ["--heartbeat-file", str(beat), "--every", "0.25"]
    with worker.run(*args) as run:
        pid = child_pid(run)
        if source == "notify":
            sleep_until(lambda: worker.state().get("heartbeat"), 10)
        else:
            sleep_until(beat.exists, 10)
        os.kill(pid, signal.SIGSTOP)  # frozen: no heartbeat, no handler, no exit
        frozen.append(pid)
        frozen_at = time.time()
        expired = run.wait_event("watchdog_expired", timeout=15)[0]
        restarted = run.wait_event("child_started", timeout=15, count=2)[1]
        child_pid(run, count=2)
        exited = run.wait_event("child_exited")[0]
        assert (exited["pid"], exited["exit_code"], exited["reason"]) == (pid, 137, "watchdog")
        assert run.events("stop_escalated")[0]["pid"] == pid  # TERM waits in a frozen process
        assert expired["age_s"] >= timeout
        detected, back = at(expired) - frozen_at, at(restarted) - frozen_at
        print(f"\n{source}: frozen worker detected after {detected:.2f} s, back after {back:.2f} s")
        # timeout + grace, plus the first backoff step and a loaded machine's slack
        assert back < timeout + grace + 0.1 + 2.0, (detected, back)
        run.signal(signal.SIGTERM)
        assert run.wait() == 0


def test_watchdog_trigger_stops_the_child_at_once_even_without_a_timeout(tmp_path: Path) -> None:
    worker = Worker(tmp_path, ENTRYPOINT_NOTIFY="1")
    with worker.run("--env", "NOTIFY_SOCKET") as run:
        pid = child_pid(run)
        sent = time.time()
        send_datagram(notify_address(run), b"WATCHDOG=trigger")
        expired = run.wait_event("watchdog_expired")[0]
        assert (expired["trigger"], expired["age_s"]) == (True, 0.0)
        exited = run.wait_event("child_exited")[0]
        assert (exited["pid"], exited["reason"]) == (pid, "watchdog")
        scheduled = run.wait_event("restart_scheduled")[0]
        assert (scheduled["reason"], scheduled["attempt"]) == ("watchdog", 1)
        child_pid(run, count=2)
        print(f"\nWATCHDOG=trigger acted on after {at(expired) - sent:.3f} s")
        run.signal(signal.SIGTERM)
        assert run.wait() == 0


def test_a_restart_after_a_watchdog_stop_counts_as_a_failure(tmp_path: Path) -> None:
    worker = Worker(
        tmp_path,
        ENTRYPOINT_NOTIFY="1",
        ENTRYPOINT_WATCHDOG_TIMEOUT="0.5",
        ENTRYPOINT_BACKOFF_MAX="2",
    )
    with worker.run() as run:  # never sends WATCHDOG=1
        scheduled = run.wait_event("restart_scheduled", timeout=20, count=3)[:3]
        run.signal(signal.SIGTERM)
        run.wait()
    assert [e["attempt"] for e in scheduled] == [1, 2, 3]
    assert {e["reason"] for e in scheduled} == {"watchdog"}
    assert scheduled[0]["delay_s"] < scheduled[1]["delay_s"] < scheduled[2]["delay_s"]
    assert {e["reason"] for e in run.events("child_exited")[:3]} == {"watchdog"}


def test_no_ready_within_the_ready_timeout_is_a_ready_timeout(tmp_path: Path) -> None:
    worker = Worker(tmp_path, ENTRYPOINT_NOTIFY="1", ENTRYPOINT_READY_TIMEOUT="1")
    with worker.run() as run:  # never says READY=1
        pid = child_pid(run)
        late = run.wait_event("ready_timeout")[0]
        assert late["age_s"] >= 1.0
        exited = run.wait_event("child_exited")[0]
        assert (exited["pid"], exited["reason"]) == (pid, "watchdog")
        assert run.wait_event("restart_scheduled")[0]["reason"] == "watchdog"
        run.wait_event("ready_timeout", count=2)  # the next child gets its own second
        run.signal(signal.SIGTERM)
        run.wait()
    assert not run.events("watchdog_expired")


def test_a_child_that_says_ready_in_time_is_kept(tmp_path: Path) -> None:
    worker = Worker(tmp_path, ENTRYPOINT_NOTIFY="1", ENTRYPOINT_READY_TIMEOUT="1")
    with worker.run("--send", "0.2:READY=1", "--send", "2:STATUS=past the deadline") as run:
        run.wait_event("child_ready")
        run.wait_event("child_status")  # a second after the deadline
        assert not run.events("ready_timeout")
        run.signal(signal.SIGTERM)
        assert run.wait() == 0


def test_extend_timeout_usec_moves_the_ready_deadline(tmp_path: Path) -> None:
    worker = Worker(tmp_path, ENTRYPOINT_NOTIFY="1", ENTRYPOINT_READY_TIMEOUT="1")
    extend = "0.2:EXTEND_TIMEOUT_USEC=3000000"
    with worker.run("--send", extend, "--send", "2:READY=1") as run:
        run.wait_event("child_ready")  # a second after the deadline, inside the extension
        assert not run.events("ready_timeout")
        run.signal(signal.SIGTERM)
        assert run.wait() == 0
    with worker.run("--send", extend) as run:  # extended, and still never ready
        started = run.wait_event("child_started")[0]
        late = run.wait_event("ready_timeout")[0]
        assert late["age_s"] >= 3.0
        assert at(late) - at(started) >= 3.0
        run.signal(signal.SIGTERM)
        run.wait()


def test_extend_timeout_usec_during_a_stop_moves_the_stop_deadline(tmp_path: Path) -> None:
    worker = Worker(tmp_path, ENTRYPOINT_NOTIFY="1", ENTRYPOINT_STOP_TIMEOUT="1")
    job = ["--on-term", "finish", "--work", "2"]
    with worker.run(*job, "--send-on-term", "EXTEND_TIMEOUT_USEC=5000000") as run:
        child_pid(run)
        run.signal(signal.SIGTERM)
        assert run.wait(15) == 0
        run.wait_stdout(r"^job finished")
        assert run.events("stop_extended")
        assert not run.events("stop_escalated")
    with worker.run(*job) as run:  # the control: no extension, SIGKILL after 1 s
        child_pid(run)
        run.signal(signal.SIGTERM)
        assert run.wait(15) == 137
        assert run.events("stop_escalated")


def test_an_extension_sent_at_the_start_does_not_move_a_later_stop(tmp_path: Path) -> None:
    worker = Worker(tmp_path, ENTRYPOINT_NOTIFY="1", ENTRYPOINT_STOP_TIMEOUT="1")
    args = ["--on-term", "ignore", "--send", "0:EXTEND_TIMEOUT_USEC=30000000\\nREADY=1"]
    with worker.run(*args) as run:
        child_pid(run)
        run.wait_event("child_ready")
        stopped = time.monotonic()
        run.signal(signal.SIGTERM)
        assert run.wait(15) == 137
        assert time.monotonic() - stopped < 10  # the 1 s grace, not the 30 s of the start
        assert not run.events("stop_extended")


# --- the heartbeat file --------------------------------------------------------------


def file_worker(tmp_path: Path, beat: Path, timeout: str = "1", **env: str) -> Worker:
    return Worker(
        tmp_path, ENTRYPOINT_HEARTBEAT_FILE=str(beat), ENTRYPOINT_WATCHDOG_TIMEOUT=timeout, **env
    )


def test_a_heartbeat_file_no_longer_touched_expires(tmp_path: Path) -> None:
    beat = tmp_path / "beat"
    with file_worker(tmp_path, beat).run("--heartbeat-file", str(beat), "--beats", "4") as run:
        pid = child_pid(run)
        run.wait_stdout(r"^heartbeats over")
        over = time.time()
        expired = run.wait_event("watchdog_expired")[0]
        assert expired["age_s"] >= 1.0
        assert at(expired) - over < 1.0 + 2.0
        exited = run.wait_event("child_exited")[0]
        assert (exited["pid"], exited["reason"]) == (pid, "watchdog")
        assert exited["uptime_s"] >= 0.6 + 1.0  # four beats 0.2 s apart, then the timeout
        run.signal(signal.SIGTERM)
        run.wait()


def test_a_missing_heartbeat_file_is_no_heartbeat_since_the_start(tmp_path: Path) -> None:
    beat = tmp_path / "never-touched"
    worker = file_worker(tmp_path, beat, timeout="1.5")
    with worker.run() as run:
        child_pid(run)
        started = run.wait_event("child_started")[0]
        result = worker.health()
        if time.time() - at(started) < 1.4:  # still inside the first timeout
            assert result.returncode == 0, result.stdout
            assert "heartbeat" in result.stdout
        expired = run.wait_event("watchdog_expired")[0]
        assert 1.5 <= expired["age_s"] < 5  # counted from the start, not from 1970
        assert at(expired) - at(started) >= 1.5
        run.signal(signal.SIGTERM)
        run.wait()
    assert not beat.exists()


def test_a_new_child_gets_the_full_timeout(tmp_path: Path) -> None:
    beat = tmp_path / "beat"
    beat.touch()
    hour_ago = time.time() - 3600
    os.utime(beat, (hour_ago, hour_ago))
    with file_worker(tmp_path, beat, timeout="1.5").run() as run:
        exits = run.wait_event("child_exited", timeout=20, count=2)[:2]
        expired = run.events("watchdog_expired")[:2]
        run.signal(signal.SIGTERM)
        run.wait()
    assert all(e["uptime_s"] >= 1.5 for e in exits), exits  # not killed for last hour's mtime
    assert all(1.5 <= e["age_s"] < 5 for e in expired), expired
    assert {e["reason"] for e in exits} == {"watchdog"}


# --- health and health --ready -------------------------------------------------------


@pytest.mark.parametrize("source", ["notify", "file"])
def test_health_fails_once_the_heartbeat_is_older_than_the_watchdog_timeout(
    tmp_path: Path, source: str, frozen: list[int]
) -> None:
    """The supervisor is frozen, so it cannot act: health sees the stale heartbeat alone."""
    beat = tmp_path / "beat"
    if source == "notify":
        worker = Worker(tmp_path, ENTRYPOINT_NOTIFY="1", ENTRYPOINT_WATCHDOG_TIMEOUT="2")
        args = ["--watchdog-every", "0.2", "--beats", "2"]
    else:
        worker = file_worker(tmp_path, beat, timeout="2")
        args = ["--heartbeat-file", str(beat), "--beats", "2"]
    with worker.run(*args) as run:
        child_pid(run)
        sleep_until(lambda: worker.state().get("state") == "running", 10)
        os.kill(run.pid, signal.SIGSTOP)
        frozen.append(run.pid)
        run.wait_stdout(r"^heartbeats over")
        stale = sleep_until(lambda: (r := worker.health()).returncode == 1 and r, 15)
        assert "no heartbeat for" in stale.stdout
        assert "limit 2 s" in stale.stdout
        assert worker.health("--ready").returncode == 1
        os.kill(run.pid, signal.SIGCONT)
        assert run.wait_event("watchdog_expired")[0]["age_s"] > 2
        run.signal(signal.SIGTERM)
        run.wait()


def test_heartbeat_max_age_without_a_watchdog(tmp_path: Path) -> None:
    beat = tmp_path / "beat"
    worker = Worker(tmp_path, ENTRYPOINT_HEARTBEAT_FILE=str(beat), ENTRYPOINT_HEARTBEAT_MAX_AGE="1")
    with worker.run("--heartbeat-file", str(beat), "--beats", "3") as run:
        pid = child_pid(run)
        sleep_until(lambda: worker.health().returncode == 0, 10)
        run.wait_stdout(r"^heartbeats over")
        stale = sleep_until(lambda: (r := worker.health()).returncode == 1 and r, 10)
        assert f"child pid {pid} sent no heartbeat for" in stale.stdout
        assert "(limit 1 s)" in stale.stdout
        assert worker.health("--ready").returncode == 1
        beat.touch()  # anyone's touch is a heartbeat
        assert worker.health().returncode == 0
        assert worker.status()["heartbeat_age_s"] < 1
        run.signal(signal.SIGTERM)
        assert run.wait() == 0
    assert [e["pid"] for e in run.events("child_started")] == [pid]  # no watchdog: no restart
    assert not run.events("watchdog_expired")


def test_health_is_0_and_not_ready_while_waiting_for_a_dependency_at_start(
    tmp_path: Path,
) -> None:
    from tests.probe_helpers import closed_port

    port = closed_port()
    worker = Worker(tmp_path, QUEUE_URL=f"redis://127.0.0.1:{port}/0", ENTRYPOINT_WAIT_TIMEOUT="60")
    with worker.run() as run:
        run.wait_event("dependency_waiting")
        sleep_until(lambda: worker.state().get("state") == "waiting", 5)
        alive = worker.health()
        assert alive.returncode == 0, alive.stdout
        assert "waiting" in alive.stdout
        ready = worker.health("--ready")
        assert ready.returncode == 1
        assert "not ready" in ready.stdout
        run.signal(signal.SIGTERM)
        run.wait(5)
    assert not run.events("child_started")


def test_ready_needs_a_running_child_that_said_ready(tmp_path: Path) -> None:
    worker = Worker(tmp_path, ENTRYPOINT_NOTIFY="1")
    with worker.run("--env", "NOTIFY_SOCKET") as run:
        pid = child_pid(run)
        sleep_until(lambda: worker.state().get("state") == "running", 5)
        assert worker.health().returncode == 0  # alive...
        before = worker.health("--ready")
        assert before.returncode == 1  # ...but not ready
        assert f"child pid {pid} has not said READY=1 yet" in before.stdout
        assert worker.state()["ready"] is False
        send_datagram(notify_address(run), b"READY=1")  # any process of the container may
        run.wait_event("child_ready")
        sleep_until(lambda: worker.state().get("ready"), 5)
        after = worker.health("--ready")
        assert after.returncode == 0, after.stdout
        send_datagram(notify_address(run), b"STOPPING=1")
        run.wait_event("child_stopping")
        sleep_until(lambda: worker.state().get("ready") is False, 5)
        assert worker.health("--ready").returncode == 1  # stopping: never ready again
        assert worker.health().returncode == 0
        run.signal(signal.SIGTERM)
        assert run.wait() == 0


def test_without_notify_ready_is_running(tmp_path: Path) -> None:
    worker = Worker(tmp_path)
    with worker.run() as run:
        child_pid(run)
        sleep_until(lambda: worker.state().get("state") == "running", 5)
        assert worker.state()["ready"] is None
        assert worker.health("--ready").returncode == 0
        run.signal(signal.SIGTERM)
        assert run.wait() == 0


@pytest.mark.parametrize("cause", ["watchdog", "memory"])
def test_not_ready_during_a_watchdog_or_memory_stop(tmp_path: Path, cause: str) -> None:
    """Not ready during either; not alive during a watchdog stop (its heartbeat is stale),
    alive during a memory recycle (planned: a restart of the container would not help)."""
    settings = {"ENTRYPOINT_STOP_TIMEOUT": "4", "ENTRYPOINT_NOTIFY": "1"}
    if cause == "memory":
        settings.update(ENTRYPOINT_MAX_RSS="1M", ENTRYPOINT_MEMORY_INTERVAL="0.2")
    worker = Worker(tmp_path, **settings)
    with worker.run("--on-term", "ignore", "--env", "NOTIFY_SOCKET", "--send", "0:READY=1") as run:
        child_pid(run)
        run.wait_event("child_ready")
        if cause == "watchdog":
            send_datagram(notify_address(run), b"WATCHDOG=trigger")
        sleep_until(lambda: worker.state().get("stop_reason") == cause, 10)
        alive, ready = worker.health(), worker.health("--ready")
        assert ready.returncode == 1
        assert alive.returncode == (1 if cause == "watchdog" else 0)
        assert "stopping" in ready.stdout
        assert f"({cause})" in ready.stdout
        run.signal(signal.SIGTERM)
        run.wait(15)


@pytest.mark.parametrize("url", [None, "tcp://127.0.0.1:{closed}", "tcp://127.0.0.1:{open}"])
def test_health_ready_in_web_mode_answers_as_health(tmp_path: Path, url: str | None) -> None:
    from tests.probe_helpers import closed_port

    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        settings = {"MODE": "web"}
        if url is not None:
            settings["ENTRYPOINT_HEALTH_URL"] = url.format(closed=closed_port(), open=port)
        worker = Worker(tmp_path, **settings)
        alive, ready = worker.health(), worker.health("--ready")
    assert (alive.returncode, alive.stdout) == (ready.returncode, ready.stdout)
    assert alive.returncode == (1 if url and "closed" in url else 0)


def test_status_shows_ready_status_and_heartbeat(tmp_path: Path) -> None:
    worker = Worker(tmp_path, ENTRYPOINT_NOTIFY="1", ENTRYPOINT_WATCHDOG_TIMEOUT="5")
    args = ["--send", "0:READY=1\\nSTATUS=42 jobs done", "--watchdog-every", "0.5"]
    with worker.run(*args) as run:
        pid = child_pid(run)
        sleep_until(lambda: worker.state().get("heartbeat"), 10)
        document = worker.status()
        assert document["child_pid"] == pid
        assert document["ready"] is True
        assert document["status"] == "42 jobs done"
        assert 0 <= document["heartbeat_age_s"] < 5
        assert worker.state()["heartbeat_age_s"] is not None
        run.signal(signal.SIGTERM)
        assert run.wait() == 0
