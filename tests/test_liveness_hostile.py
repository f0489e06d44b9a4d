"""Liveness under bad input: wrong settings, and a child that misuses the notify socket.

A wrong setting is one line and 78, before anything starts. A datagram too
large, text that is not UTF-8, or ten thousand datagrams a second leave the
supervisor working: signals are still forwarded, the stop is still graceful,
and the warnings about it are few.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.helpers import run_entrypoint, sleep_until
from tests.liveness_helpers import Worker, child_pid, one_line

BAD = [
    (
        {"ENTRYPOINT_NOTIFY": "1", "ENTRYPOINT_WATCHDOG_TIMEOUT": "-1"},
        "ENTRYPOINT_WATCHDOG_TIMEOUT",
    ),
    (
        {"ENTRYPOINT_NOTIFY": "1", "ENTRYPOINT_WATCHDOG_TIMEOUT": "abc"},
        "ENTRYPOINT_WATCHDOG_TIMEOUT",
    ),
    ({"ENTRYPOINT_HEARTBEAT_FILE": "/no/such/dir/beat"}, "ENTRYPOINT_HEARTBEAT_FILE"),
    ({"ENTRYPOINT_READY_TIMEOUT": "10"}, "ENTRYPOINT_READY_TIMEOUT needs ENTRYPOINT_NOTIFY=1"),
    ({"ENTRYPOINT_WATCHDOG_TIMEOUT": "10"}, "ENTRYPOINT_WATCHDOG_TIMEOUT needs a heartbeat"),
    ({"ENTRYPOINT_NOTIFY": "maybe"}, "ENTRYPOINT_NOTIFY"),
    ({"ENTRYPOINT_NOTIFY": "1", "ENTRYPOINT_READY_TIMEOUT": "soon"}, "ENTRYPOINT_READY_TIMEOUT"),
    ({"ENTRYPOINT_HEARTBEAT_MAX_AGE": "-5"}, "ENTRYPOINT_HEARTBEAT_MAX_AGE"),
]


@pytest.mark.parametrize(("settings", "named"), BAD)
@pytest.mark.parametrize("command", ["run", "check"])
def test_a_bad_liveness_setting_is_one_line_and_78(
    tmp_path: Path, settings: dict[str, str], named: str, command: str
) -> None:
    worker = Worker(tmp_path, WORKER_CMD="true", **settings)
    result = run_entrypoint(command, env=worker.env)
    assert result.returncode == 78, result.stderr
    line = one_line(result.stderr)
    assert line.startswith("entrypoint: error: ")
    assert named in line
    assert "Traceback" not in result.stderr
    assert not worker.state_file.exists()  # nothing started


def test_a_datagram_too_large_is_dropped_and_the_rest_works(tmp_path: Path) -> None:
    worker = Worker(tmp_path, ENTRYPOINT_NOTIFY="1", ENTRYPOINT_STOP_TIMEOUT="10")
    sizes = ["--send-size", str(1 << 20), "--send-size", str(64 << 10)]
    with worker.run(*sizes, "--send", "0:READY=1") as run:
        pid = child_pid(run)
        # 1 MB goes out where net.core.wmem_max allows a send buffer that large
        # (4 MiB here); elsewhere the kernel refuses it at the sender.
        big = run.wait_stdout(rf"^size {1 << 20} (sent|failed EMSGSIZE)")[0]
        run.wait_stdout(rf"^size {64 << 10} sent")
        ignored = run.wait_event("notify_ignored")[0]
        assert (ignored["reason"], ignored["sender_pid"]) == ("too_large", pid)
        run.wait_event("child_ready")
        assert_still_supervising(run, pid)
    dropped = sum(e["count"] for e in run.events("notify_ignored") if e["reason"] == "too_large")
    assert dropped == (2 if big.group(1) == "sent" else 1)
    assert len(run.events("notify_ignored")) <= 2  # the first at once, the rest in one line


def test_a_status_that_is_not_utf8_is_dropped_and_the_rest_counts(tmp_path: Path) -> None:
    worker = Worker(tmp_path, ENTRYPOINT_NOTIFY="1")
    bad = b"0:STATUS=caf\xe9 \xff\xfe\\nREADY=1"
    with worker.run("--send", "0:STATUS=first", "--send", bad) as run:
        pid = child_pid(run)
        ignored = run.wait_event("notify_ignored")[0]
        assert (ignored["reason"], ignored["sender_pid"]) == ("status_not_utf8", pid)
        run.wait_event("child_ready")  # the same datagram's READY=1 counts
        sleep_until(lambda: worker.state().get("ready"), 5)
        assert worker.state()["status"] is None  # cleared, as systemd does
        assert_still_supervising(run, pid)


@pytest.mark.parametrize(
    ("datagram", "reason"),
    [("WATCHDOG=bogus", "bad_watchdog"), ("WATCHDOG=1", None)],
    ids=["invalid", "valid"],
)
def test_ten_thousand_datagrams_a_second_leave_the_supervisor_working(
    tmp_path: Path, datagram: str, reason: str | None
) -> None:
    seconds = 4
    worker = Worker(
        tmp_path,
        ENTRYPOINT_NOTIFY="1",
        ENTRYPOINT_WATCHDOG_TIMEOUT="30",
        ENTRYPOINT_STOP_TIMEOUT="10",
    )
    with worker.run("--flood", f"10000:{seconds}:{datagram}", "--send", "0:READY=1") as run:
        pid = child_pid(run)
        began = cpu_seconds(run.pid)
        flood_start = time.monotonic()
        for name in ("USR1", "HUP", "USR2"):  # forwarded while the flood goes on
            run.signal(getattr(signal, "SIG" + name))
            run.wait_stdout(rf"^signal SIG{name} \(pid: {pid}\)")
            assert time.monotonic() - flood_start < seconds, "the flood ended first"
        assert worker.health().returncode == 0
        sent = run.wait_stdout(r"^flood sent (\d+) dropped (\d+)", timeout=seconds + 10)[0]
        cpu = cpu_seconds(run.pid) - began
        print(f"\nflood of {datagram}: {sent.group(1)} sent, {sent.group(2)} refused (queue full);"
              f" supervisor CPU {cpu:.2f} s in {seconds} s")  # fmt: skip
        warnings = [e for e in run.events("notify_ignored") if e["reason"] == reason]
        assert_still_supervising(run, pid)
    if reason is None:
        assert not run.events("notify_ignored")
    else:
        # The first at once, then one line per 10 s window, and what was left at the end.
        assert 1 <= len(warnings) <= 2, warnings
        assert warnings[0]["count"] == 1
        later = run.events("notify_ignored")
        assert sum(e["count"] for e in later) >= int(sent.group(1)) * 0.5
    assert not run.events("watchdog_expired")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[-1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def assert_still_supervising(run: object, pid: int) -> None:
    """A signal is forwarded to the child, and a stop is graceful (no SIGKILL)."""
    from tests.helpers import Running

    assert isinstance(run, Running)
    run.signal(signal.SIGWINCH)
    run.wait_stdout(rf"^signal SIGWINCH \(pid: {pid}\)")
    run.signal(signal.SIGTERM)
    assert run.wait(15) == 0
    assert run.wait_event("stop_finished")[0]["exit_code"] == 0
    assert not run.events("stop_escalated")
