"""The notify socket: the parser as values, the socket against real clients and hostile peers.

Real clients: Debian's `systemd-notify` (v252: READY=1, then BARRIER=1 with a
pipe fd, exit 1 when that fd is not closed), Python's `sdnotify` (PyPI), and
Node's `sd-notify` (npm, libsystemd underneath; installed under tests/node).
Hostile peers are this process sending by hand: too large, invalid UTF-8,
fds without a barrier, many fds, a flood.
"""

from __future__ import annotations

import array
import contextlib
import errno
import functools
import json
import os
import select
import shutil
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from entrypoint.plan.modes import Liveness
from entrypoint.runtime import notify
from entrypoint.runtime.liveness import LivenessWatch
from entrypoint.runtime.loop import Loop
from entrypoint.runtime.notify import (
    NOTIFY_BUFFER_MAX,
    READS_PER_WAKEUP,
    STATUS_MAX,
    Inherited,
    Notification,
    NotifySocket,
    RateLimited,
    Upstream,
    child_environment,
    parse,
    parse_inherited,
    upstream_datagram,
)
from tests.helpers import ROOT
from tests.loop_thread import fds_left, open_fds
from tests.servers import missing

NODE_DIR = ROOT / "tests" / "node"
REASONS = {
    value for name, value in vars(notify).items() if name.isupper() and isinstance(value, str)
}


# --- the parser, as values -------------------------------------------------------------


@pytest.mark.parametrize(
    ("datagram", "expected"),
    [
        (b"READY=1", Notification(ready=True)),
        (b"READY=1\n", Notification(ready=True)),
        (b"READY=1\nSTATUS=Processing jobs\n", Notification(ready=True, status="Processing jobs")),
        (b"\n\nREADY=1\r\n\rSTOPPING=1\n", Notification(ready=True, stopping=True)),
        (b"READY=1\0", Notification(ready=True)),
        (b"READY=0", Notification()),
        (b"READY=1 ", Notification()),
        (b" READY=1", Notification()),
        (b"ready=1", Notification()),
        (b"STOPPING=1", Notification(stopping=True)),
        (b"WATCHDOG=1", Notification(watchdog=True)),
        (b"WATCHDOG=trigger", Notification(watchdog_trigger=True)),
        (b"WATCHDOG=2", Notification(problems=(notify.BAD_WATCHDOG,))),
        (b"WATCHDOG=1\nWATCHDOG=trigger", Notification(watchdog=True)),
        (b"STATUS=", Notification(status="")),
        (b"STATUS=first\nSTATUS=second", Notification(status="first")),
        (b"STATUS=a=b=c", Notification(status="a=b=c")),
        (b"STATUS=caf\xc3\xa9", Notification(status="caf\N{LATIN SMALL LETTER E WITH ACUTE}")),
        (
            b"STATUS=tab\there \x1b[31mred\x7f bell\x07",
            Notification(status="tab\there \x1b[31mred\x7f bell\x07"),
        ),
        (b"STATUS=caf\xe9", Notification(status="", problems=(notify.STATUS_NOT_UTF8,))),
        (b"STATUS=\xed\xa0\x80", Notification(status="", problems=(notify.STATUS_NOT_UTF8,))),
        (b"STATUS=\xc0\xaf", Notification(status="", problems=(notify.STATUS_NOT_UTF8,))),
        (b"STATUS=a\xef\xbf\xbe", Notification(status="", problems=(notify.STATUS_NOT_UTF8,))),
        (b"STATUS=\xef\xb7\x90", Notification(status="", problems=(notify.STATUS_NOT_UTF8,))),
        (b"STATUS=\xf4\x8f\xbf\xbf", Notification(status="", problems=(notify.STATUS_NOT_UTF8,))),
        (b"STATUS=\xf4\x8f\xbf\xbd", Notification(status="\U0010fffd")),
        (
            b"\xff\xfe\nREADY=1\nSTATUS=\xc3",
            Notification(ready=True, status="", problems=(notify.STATUS_NOT_UTF8,)),
        ),
        (b"EXTEND_TIMEOUT_USEC=5000000", Notification(extend_timeout_usec=5_000_000)),
        (b"EXTEND_TIMEOUT_USEC=0", Notification(extend_timeout_usec=0)),
        (b"EXTEND_TIMEOUT_USEC= \t+7", Notification(extend_timeout_usec=7)),
        (
            b"EXTEND_TIMEOUT_USEC=18446744073709551615",
            Notification(extend_timeout_usec=2**64 - 1),
        ),
        (
            b"EXTEND_TIMEOUT_USEC=18446744073709551616",
            Notification(problems=("bad_extend_timeout",)),
        ),
        (b"EXTEND_TIMEOUT_USEC=-1", Notification(problems=(notify.BAD_EXTEND_TIMEOUT,))),
        (b"EXTEND_TIMEOUT_USEC=", Notification(problems=(notify.BAD_EXTEND_TIMEOUT,))),
        (b"EXTEND_TIMEOUT_USEC=5s", Notification(problems=(notify.BAD_EXTEND_TIMEOUT,))),
        (b"EXTEND_TIMEOUT_USEC=5_000", Notification(problems=(notify.BAD_EXTEND_TIMEOUT,))),
        (
            "EXTEND_TIMEOUT_USEC=\N{ARABIC-INDIC DIGIT FIVE}".encode(),
            Notification(problems=(notify.BAD_EXTEND_TIMEOUT,)),
        ),
        (b"BARRIER=1", Notification(barrier=True)),
        (b"BARRIER=1\n", Notification(barrier=True)),
        (b"READY=1\nBARRIER=1", Notification(barrier=True, problems=(notify.BARRIER_MIXED,))),
        (b"RELOADING=1\nMAINPID=4711\nERRNO=2\nFDSTORE=1\nX=y", Notification()),
        (b"READY=1\0STATUS=x", Notification(problems=(notify.NUL_BYTE,))),
        (b"READY=1\0\0", Notification(problems=(notify.NUL_BYTE,))),
        (b"", Notification()),
        (b"x" * (NOTIFY_BUFFER_MAX + 1), Notification(problems=(notify.TOO_LARGE,))),
    ],
)
def test_parse(datagram: bytes, expected: Notification) -> None:
    assert parse(datagram) == expected


def test_parse_keeps_a_datagram_of_the_largest_size() -> None:
    datagram = b"READY=1\nSTATUS=" + b"s" * (NOTIFY_BUFFER_MAX - 15)
    assert len(datagram) == NOTIFY_BUFFER_MAX
    assert parse(datagram).ready


def test_a_long_status_is_cut_with_an_ellipsis() -> None:
    status = parse(b"STATUS=" + "\N{SNOWMAN}".encode() * 1300).status
    assert status is not None
    assert len(status) == STATUS_MAX
    assert status.endswith("\N{HORIZONTAL ELLIPSIS}")
    assert parse(b"STATUS=" + b"s" * STATUS_MAX).status == "s" * STATUS_MAX


def test_what_acts() -> None:
    assert not Notification().acts
    assert not Notification(barrier=True).acts
    assert not parse(b"RELOADING=1").acts
    assert Notification(status="").acts
    assert Notification(extend_timeout_usec=0).acts


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=NOTIFY_BUFFER_MAX + 64))
def test_parse_never_raises_and_is_bounded(datagram: bytes) -> None:
    result = parse(datagram)
    assert result.status is None or len(result.status) <= STATUS_MAX
    assert set(result.problems) <= REASONS
    assert len(set(result.problems)) == len(result.problems)
    if result.barrier:
        assert not result.acts


LINES = st.sampled_from(
    [b"READY=1", b"STOPPING=1", b"WATCHDOG=1", b"WATCHDOG=trigger", b"BARRIER=1", b"MAINPID=1"]
) | st.builds(
    lambda k, v: k + v, st.sampled_from([b"STATUS=", b"EXTEND_TIMEOUT_USEC="]), st.binary()
)


@settings(max_examples=300, deadline=None)
@given(st.lists(LINES, max_size=8), st.sampled_from([b"\n", b"\r\n", b"\n\n"]))
def test_parse_of_assignments_matches_their_lines(lines: list[bytes], separator: bytes) -> None:
    datagram = separator.join(lines)
    result = parse(datagram)
    if (
        b"\0" in datagram
        or len(datagram) > NOTIFY_BUFFER_MAX
        or any(b"\n" in line or b"\r" in line for line in lines)
    ):
        return
    if b"BARRIER=1" in lines:
        assert result.barrier
        assert not result.acts
        return
    assert result.ready == (b"READY=1" in lines)
    assert result.stopping == (b"STOPPING=1" in lines)
    statuses = [line[7:] for line in lines if line.startswith(b"STATUS=")]
    if statuses:
        try:
            expected = statuses[0].decode()
        except UnicodeDecodeError:
            expected = ""
        assert result.status is not None
        assert result.status == expected[: len(result.status)]
    else:
        assert result.status is None


def test_advance_follows_systemd() -> None:
    state = notify.ChildState()
    state = notify.advance(state, parse(b"STATUS=Starting"))
    assert state == notify.ChildState(status="Starting")
    state = notify.advance(state, parse(b"READY=1"))
    assert state == notify.ChildState(ready=True, status="Starting")
    state = notify.advance(state, parse(b"WATCHDOG=1\nSTATUS="))
    assert state == notify.ChildState(ready=True)
    state = notify.advance(state, parse(b"STOPPING=1\nSTATUS=Draining"))
    assert state == notify.ChildState(stopping=True, status="Draining")
    state = notify.advance(state, parse(b"READY=1"))  # no resurrection
    assert state == notify.ChildState(stopping=True, status="Draining")
    assert notify.advance(notify.ChildState(), parse(b"READY=1\nSTOPPING=1")) == (
        notify.ChildState(stopping=True)
    )


# --- the environment, the inherited socket, what goes upstream -------------------------


def test_child_environment_without_watchdog() -> None:
    environ = {"PATH": "/bin", "NOTIFY_SOCKET": "/run/podman.sock", "WATCHDOG_USEC": "9"}
    assert child_environment(environ, "@entrypoint/notify/1/ab") == {
        "PATH": "/bin",
        "NOTIFY_SOCKET": "@entrypoint/notify/1/ab",
    }
    assert environ["NOTIFY_SOCKET"] == "/run/podman.sock"


def test_child_environment_with_watchdog() -> None:
    environ = {"WATCHDOG_PID": "1", "HOME": "/root"}
    assert child_environment(environ, "@n", watchdog_usec=30_000_000) == {
        "HOME": "/root",
        "NOTIFY_SOCKET": "@n",
        "WATCHDOG_USEC": "30000000",
    }
    assert child_environment({}, "@n", watchdog_usec=1, watchdog_pid=42) == {
        "NOTIFY_SOCKET": "@n",
        "WATCHDOG_USEC": "1",
        "WATCHDOG_PID": "42",
    }
    assert "WATCHDOG_PID" not in child_environment({}, "@n", watchdog_usec=0, watchdog_pid=42)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("@podman/notify", Inherited(b"\0podman/notify")),
        ("/run/notify/notify.sock", Inherited("/run/notify/notify.sock")),
        ("@" + "a" * 107, Inherited(b"\0" + b"a" * 107)),
        ("@" + "a" * 108, Inherited(None, "the abstract name is longer than 107 bytes")),
        ("/" + "a" * 106, Inherited("/" + "a" * 106)),
        ("/" + "a" * 107, Inherited(None, "the path is longer than 107 bytes")),
        ("run/notify.sock", Inherited(None, "neither an absolute path nor an @abstract name")),
        ("vsock:2:1234", Inherited(None, "vsock addresses are not supported")),
        ("3", Inherited(None, "neither an absolute path nor an @abstract name")),
    ],
)
def test_parse_inherited(value: str | None, expected: Inherited | None) -> None:
    assert parse_inherited(value) == expected


@pytest.mark.parametrize(
    ("notification", "datagram"),
    [
        (Notification(ready=True), b"READY=1"),
        (Notification(status="Working"), b"STATUS=Working"),
        (Notification(status=""), b"STATUS="),
        (Notification(stopping=True, ready=True, status="x"), b"READY=1\nSTATUS=x\nSTOPPING=1"),
        (Notification(watchdog=True, extend_timeout_usec=5, watchdog_trigger=True), b""),
        (Notification(status="caf\N{LATIN SMALL LETTER E WITH ACUTE}"), b"STATUS=caf\xc3\xa9"),
    ],
)
def test_upstream_datagram(notification: Notification, datagram: bytes) -> None:
    assert upstream_datagram(notification) == datagram


# --- the rate-limited report, on a scripted clock --------------------------------------


def test_warnings_are_rate_limited_per_reason() -> None:
    now = [100.0]
    loop = Loop(clock=lambda: now[0])
    reports: list[tuple[str, int, int | None]] = []
    limited = RateLimited(loop, lambda *report: reports.append(report), window=10)
    for pid in range(1, 101):
        limited.add("too_large", pid)
    limited.add("nul_byte", 7)
    assert reports == [("too_large", 1, 1), ("nul_byte", 1, 7)]
    assert loop.next_timer() == 110.0
    now[0] = 110.0
    loop.run_once(0)
    assert reports[2:] == [("too_large", 99, 100)]
    assert loop.next_timer() is None  # nothing waiting: no timer
    limited.add("too_large", 5)  # within the new window
    now[0] = 125.0
    limited.add("nul_byte", 8)  # past its window: at once
    assert reports[3:] == [("nul_byte", 1, 8)]
    limited.close()
    assert reports[4:] == [("too_large", 1, 5)]
    assert loop.next_timer() is None


# --- the socket, with real clients -----------------------------------------------------


class Receiver:
    """A NotifySocket driven by a Loop in this test, collecting what it hands over."""

    def __init__(self, warn_window: float = notify.WARN_WINDOW_S) -> None:
        self.loop = Loop()
        self.messages: list[tuple[Notification, int]] = []
        self.reports: list[tuple[str, int, int | None]] = []
        self.socket = NotifySocket(
            on_ignored=lambda *report: self.reports.append(report), warn_window=warn_window
        )
        self.socket.register(self.loop, lambda n, pid: self.messages.append((n, pid)))

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "NOTIFY_SOCKET": self.socket.env_value}

    def pump_until(self, condition: Callable[[], object], timeout: float = 10) -> None:
        """Run the loop (it waits on the socket, nothing sleeps) until `condition()`."""
        deadline = time.monotonic() + timeout
        while not condition():
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"not seen within {timeout} s: {self.messages} {self.reports}")
            self.loop.run_once(min(left, 0.1))

    def run(self, argv: list[str], timeout: float = 15) -> tuple[int, str]:
        """Run a client to its end while the loop answers it; (exit code, stderr)."""
        with subprocess.Popen(argv, env=self.env, stderr=subprocess.PIPE, text=True) as proc:
            self.pump_until(lambda: proc.poll() is not None, timeout)
            _out, err = proc.communicate(timeout=5)
        self.drain()
        return proc.returncode, err

    def drain(self) -> None:
        """Read whatever is still queued, without waiting."""
        readable = select.select([self.socket], [], [], 0)[0]
        while readable:
            self.loop.run_once(0)
            readable = select.select([self.socket], [], [], 0)[0]

    def close(self) -> None:
        self.socket.close()
        self.loop.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    received = Receiver()
    yield received
    received.close()


def systemd_notify() -> str:
    found = shutil.which("systemd-notify")
    if found is None:
        missing("systemd-notify is not installed (Debian package systemd)")
    assert found is not None
    return found


def test_systemd_notify_ready_gets_its_barrier_answered(receiver: Receiver) -> None:
    code, err = receiver.run([systemd_notify(), "--ready"])
    assert (code, err) == (0, "")
    # systemd-notify speaks for the process that called it: its credentials
    # carry its parent's pid, this test's.
    assert receiver.messages == [(Notification(ready=True), os.getpid())]
    assert receiver.socket.totals == {}


def test_systemd_notify_status_and_more(receiver: Receiver) -> None:
    code, err = receiver.run(
        [
            systemd_notify(),
            "--status=Loading 50% \N{SNOWMAN}",
            "WATCHDOG=1",
            "EXTEND_TIMEOUT_USEC=9",
        ]
    )
    assert (code, err) == (0, "")
    assert [n for n, _pid in receiver.messages] == [
        Notification(status="Loading 50% \N{SNOWMAN}", watchdog=True, extend_timeout_usec=9)
    ]


def test_control_systemd_notify_fails_when_the_barrier_fd_stays_open() -> None:
    """The proof that the test above can fail: a receiver that keeps the fds (5 s)."""
    client = systemd_notify()
    keeper = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    name = f"entrypoint-test/keeper/{os.getpid()}"
    keeper.bind("\0" + name)
    kept: list[int] = []
    try:
        env = {**os.environ, "NOTIFY_SOCKET": "@" + name}
        proc = subprocess.run(
            [client, "--ready"], env=env, capture_output=True, text=True, timeout=15, check=False
        )
        assert proc.returncode == 1
        assert "Failed to invoke barrier: Connection timed out" in proc.stderr
        while select.select([keeper], [], [], 0)[0]:
            _data, ancillary, _flags, _addr = keeper.recvmsg(4096, 4096)
            for _level, _kind, data in ancillary:
                kept.extend(array.array("i", data))
        assert kept  # the pipe's write end, held until now
    finally:
        for fd in kept:
            os.close(fd)
        keeper.close()


SDNOTIFY_CLIENT = """
import os, sdnotify
n = sdnotify.SystemdNotifier(debug=True)
n.notify("READY=1\\nSTATUS=python up")
n.notify("WATCHDOG=1")
n.notify("STATUS=caf\\u00e9")
n.notify("STOPPING=1")
print(os.getpid())
"""


def test_python_sdnotify(receiver: Receiver) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SDNOTIFY_CLIENT],
        env=receiver.env,
        capture_output=True,
        text=True,
        timeout=15,
        check=True,
    )
    pid = int(proc.stdout)
    receiver.pump_until(lambda: len(receiver.messages) == 4)
    assert receiver.messages == [
        (Notification(ready=True, status="python up"), pid),
        (Notification(watchdog=True), pid),
        # sdnotify encodes as latin-1: systemd would not take this status either.
        (Notification(status="", problems=(notify.STATUS_NOT_UTF8,)), pid),
        (Notification(stopping=True), pid),
    ]
    assert receiver.socket.totals == {notify.STATUS_NOT_UTF8: 1}
    assert receiver.reports == [(notify.STATUS_NOT_UTF8, 1, pid)]


def node_client() -> list[str]:
    node = shutil.which("node")
    if node is None:
        missing("node is not installed")
    if not (NODE_DIR / "node_modules" / "sd-notify" / "build" / "Release" / "notify.node").exists():
        missing("tests/node/node_modules is missing: npm ci --prefix tests/node --nodedir=/usr")
    assert node is not None
    return [node, "-e"]


NODE_CLIENT = """
const notify = require('sd-notify')
notify.ready()
notify.sendStatus('node up')
notify.watchdog()
notify.stopping(process.pid)
console.log(process.pid)
"""


def test_node_sd_notify(receiver: Receiver) -> None:
    proc = subprocess.run(
        [*node_client(), NODE_CLIENT],
        cwd=NODE_DIR,
        env=receiver.env,
        capture_output=True,
        text=True,
        timeout=15,
        check=True,
    )
    pid = int(proc.stdout)
    receiver.pump_until(lambda: len(receiver.messages) == 4)
    assert receiver.messages == [
        (Notification(ready=True), pid),
        (Notification(status="node up"), pid),
        (Notification(watchdog=True), pid),
        (Notification(stopping=True), pid),
    ]


# --- WATCHDOG_PID, as libsystemd's sd_watchdog_enabled() reads it ----------------------

WATCHDOG_ENABLED = """
import ctypes, sys
libsystemd = ctypes.CDLL("libsystemd.so.0")
usec = ctypes.c_uint64(0)
print(libsystemd.sd_watchdog_enabled(0, ctypes.byref(usec)), usec.value)
"""

# What a supervisor that forks before exec can do, as systemd does: the child
# sets WATCHDOG_PID to its own pid, then execs.
FORK_THEN_EXEC = [
    sys.executable,
    "-c",
    """
import os, sys
pid = os.fork()
if pid == 0:
    env = dict(os.environ, WATCHDOG_PID=str(os.getpid()))
    os.execvpe(sys.argv[1], sys.argv[1:], env)
os.waitpid(pid, 0)
""",
]


def test_watchdog_pid_as_libsystemd_reads_it() -> None:
    try:
        import ctypes

        ctypes.CDLL("libsystemd.so.0")
    except OSError:
        missing("libsystemd.so.0 is not installed (Debian package libsystemd0)")

    def enabled(argv: list[str], **extra: str) -> str:
        env = {name: value for name, value in os.environ.items() if name != "WATCHDOG_PID"}
        env.update(WATCHDOG_USEC="5000000", **extra)
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=15, check=True)
        return proc.stdout.strip()

    client = [sys.executable, "-c", WATCHDOG_ENABLED]
    assert enabled(client) == "1 5000000"  # no WATCHDOG_PID: the watchdog is for whoever reads it
    assert enabled(client, WATCHDOG_PID=str(os.getpid())) == "0 0"  # someone else's pid: off
    assert enabled([*FORK_THEN_EXEC, *client]) == "1 5000000"
    assert enabled(client, WATCHDOG_PID="x") == "-22 0"  # unparsable: an error (-EINVAL)


def test_node_sd_notify_watchdog_interval_honours_watchdog_pid() -> None:
    client = [*node_client(), "console.log(require('sd-notify').watchdogInterval())"]

    def interval(argv: list[str], **extra: str) -> str:
        env = {name: value for name, value in os.environ.items() if name != "WATCHDOG_PID"}
        env.update(WATCHDOG_USEC="5000000", **extra)
        proc = subprocess.run(
            argv, cwd=NODE_DIR, env=env, capture_output=True, text=True, timeout=15, check=True
        )
        return proc.stdout.strip()

    assert interval(client) == "5000"  # milliseconds
    assert interval(client, WATCHDOG_PID=str(os.getpid())) == "0"
    assert interval([*FORK_THEN_EXEC, *client]) == "5000"


# --- hostile peers ---------------------------------------------------------------------


def send(receiver: Receiver, datagram: bytes, fds: Sequence[int] = ()) -> None:
    sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
        sender.sendmsg([datagram], ancillary, 0, receiver.socket.name)
    finally:
        sender.close()


def pipes(count: int) -> tuple[list[int], list[int]]:
    """`count` pipes: their read ends (kept here) and write ends (to send)."""
    reads, writes = [], []
    for _ in range(count):
        read, write = os.pipe()
        reads.append(read)
        writes.append(write)
    return reads, writes


def hung_up(fds: list[int]) -> bool:
    """Whether every pipe's write end is closed everywhere (what a barrier waits for)."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    return len([fd for fd, events in poller.poll(0) if events & select.POLLHUP]) == len(fds)


def send_with_fds(receiver: Receiver, datagram: bytes, count: int) -> list[int]:
    """Send `datagram` with `count` pipe write ends; return the read ends."""
    reads, writes = pipes(count)
    try:
        send(receiver, datagram, writes)
    finally:
        for fd in writes:
            os.close(fd)
    assert not hung_up(reads)  # the receiver holds the write ends until it reads
    return reads


def test_every_passed_fd_is_closed_and_none_leaks(receiver: Receiver) -> None:
    before = open_fds()
    cases = [
        (b"BARRIER=1", 1, {}),
        (b"READY=1", 3, {notify.FDS_CLOSED: 1}),
        (b"BARRIER=1", 10, {notify.BARRIER_FDS: 1}),
        (b"STATUS=many", 253, {notify.FDS_CLOSED: 1}),  # SCM_MAX_FD: the most one datagram takes
        (b"READY=1\nBARRIER=1", 1, {notify.BARRIER_MIXED: 1}),
        (b"\xff" * (NOTIFY_BUFFER_MAX + 1), 2, {notify.TOO_LARGE: 1}),
        (b"READY=1\0x", 4, {notify.NUL_BYTE: 1, notify.FDS_CLOSED: 1}),
    ]
    for datagram, count, new in cases:
        totals = dict(receiver.socket.totals)
        reads = send_with_fds(receiver, datagram, count)
        try:
            receiver.pump_until(functools.partial(hung_up, reads))
        finally:
            for fd in reads:
                os.close(fd)
        grown = {
            reason: receiver.socket.totals[reason] - totals.get(reason, 0)
            for reason in receiver.socket.totals
            if receiver.socket.totals[reason] != totals.get(reason, 0)
        }
        assert grown == new, datagram[:20]
    assert [n for n, _pid in receiver.messages] == [
        Notification(ready=True),
        Notification(status="many"),
    ]
    assert fds_left(before) == set()


def test_too_large_datagrams(receiver: Receiver) -> None:
    sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        with pytest.raises(OSError) as refused:
            sender.sendto(b"x" * (1 << 20), receiver.socket.name)
        assert refused.value.errno == errno.EMSGSIZE  # 1 MB never leaves the sender
        sender.sendto(b"READY=1\n" + b"x" * 100_000, receiver.socket.name)
        sender.sendto(b"STATUS=" + b"x" * (NOTIFY_BUFFER_MAX - 7), receiver.socket.name)
        sender.sendto(b"READY=1\nSTATUS=" + b"x" * (NOTIFY_BUFFER_MAX - 14), receiver.socket.name)
    finally:
        sender.close()
    receiver.pump_until(lambda: receiver.messages)
    assert receiver.socket.totals == {notify.TOO_LARGE: 2}
    assert receiver.reports == [(notify.TOO_LARGE, 1, os.getpid())]
    status = receiver.messages[0][0].status
    assert status is not None
    assert len(status) == STATUS_MAX


def test_invalid_utf8_and_nul_bytes(receiver: Receiver) -> None:
    send(receiver, b"READY=1\nSTATUS=\xc3\x28 broken")
    send(receiver, b"STOPPING=1\0READY=1")
    send(receiver, b"WATCHDOG=1\0")
    receiver.pump_until(lambda: len(receiver.messages) == 2)
    receiver.drain()
    assert [n for n, _pid in receiver.messages] == [
        Notification(ready=True, status="", problems=(notify.STATUS_NOT_UTF8,)),
        Notification(watchdog=True),
    ]
    assert receiver.socket.totals == {notify.STATUS_NOT_UTF8: 1, notify.NUL_BYTE: 1}


FLOOD = """
import socket, sys, time
sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
address = "\\0" + sys.argv[1][1:]
sent = refused = 0
start = time.monotonic()
for i in range(10_000):
    try:
        sender.sendto(b"WATCHDOG=1\\nEXTEND_TIMEOUT_USEC=never", socket.MSG_DONTWAIT, address)
        sent += 1
    except BlockingIOError:
        refused += 1
print(sent, refused, time.monotonic() - start)
"""


def test_a_flood_keeps_the_socket_working_and_is_warned_about_once() -> None:
    receiver = Receiver(warn_window=600)
    try:
        with subprocess.Popen(
            [sys.executable, "-c", FLOOD, receiver.socket.env_value],
            stdout=subprocess.PIPE,
            text=True,
        ) as flood:
            receiver.pump_until(lambda: flood.poll() is not None, timeout=30)
            out, _err = flood.communicate(timeout=5)
        receiver.drain()
        sent, refused, _seconds = out.split()
        assert int(sent) + int(refused) == 10_000
        assert len(receiver.messages) == int(sent)  # all that the kernel took, read
        assert receiver.socket.totals == {notify.BAD_EXTEND_TIMEOUT: int(sent)}
        assert len(receiver.reports) == 1  # the first at once; the rest when the window ends
        send(receiver, b"READY=1")
        receiver.pump_until(lambda: receiver.messages[-1][0].ready)
    finally:
        receiver.close()
    flooder = receiver.messages[-2][1]
    assert receiver.reports[1:] == [(notify.BAD_EXTEND_TIMEOUT, int(sent) - 1, flooder)]


def unshare(*namespaces: str) -> list[str]:
    """`unshare` with these namespace flags, once it is known to work here."""
    if shutil.which("unshare") is None:
        missing("unshare (util-linux) is not installed")
    argv = ["unshare", *namespaces]
    probe = subprocess.run([*argv, "true"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        missing(f"cannot make {' '.join(namespaces)} namespaces here: {probe.stderr.strip()}")
    return argv


# In a network namespace of its own, where the queue may hold 1000 datagrams.
BOUNDED_WAKEUPS = """
import json, socket
from entrypoint.runtime.loop import Loop
from entrypoint.runtime.notify import NotifySocket
loop = Loop()
got = []
sock = NotifySocket()
sock.register(loop, lambda n, pid: got.append(pid))
for _ in range(500):  # a sender each: each queued datagram counts against its send buffer
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
        sender.sendto(b"WATCHDOG=1", socket.MSG_DONTWAIT, sock.name)
per_wakeup = []
while len(got) < 500 and len(per_wakeup) < 1000:
    before = len(got)
    loop.run_once(0)
    per_wakeup.append(len(got) - before)
print(json.dumps(per_wakeup))
"""


def test_each_wakeup_reads_a_bounded_number_of_datagrams() -> None:
    script = 'sysctl -qw net.unix.max_dgram_qlen=1000 && exec "$@"'
    proc = subprocess.run(
        [*unshare("--net"), "sh", "-c", script, "sh", sys.executable, "-c", BOUNDED_WAKEUPS],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    per_wakeup = json.loads(proc.stdout)
    assert sum(per_wakeup) == 500
    assert per_wakeup[0] == READS_PER_WAKEUP < 500
    assert max(per_wakeup) == READS_PER_WAKEUP


RECEIVER_IN_A_PID_NAMESPACE = """
import json, os, subprocess, sys, time
from entrypoint.runtime.loop import Loop
from entrypoint.runtime.notify import NotifySocket
loop = Loop()
got = []
sock = NotifySocket(on_ignored=lambda *report: None)
sock.register(loop, lambda n, pid: got.append(pid))
print(sock.env_value, flush=True)
sys.stdin.readline()  # the outsider has sent
subprocess.run([sys.executable, "-c", sys.argv[1], sock.env_value], check=True)
deadline = time.monotonic() + 10
while not got and time.monotonic() < deadline:
    loop.run_once(deadline - time.monotonic())
loop.run_once(0)
print(json.dumps({"pids": got, "totals": sock.totals}), flush=True)
"""
SEND_READY = """
import socket, sys
socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"READY=1", "\\0" + sys.argv[1][1:])
"""


def test_a_sender_outside_the_pid_namespace_is_dropped() -> None:
    argv = [*unshare("--pid", "--fork", "--kill-child"), sys.executable, "-c"]
    with subprocess.Popen(
        [*argv, RECEIVER_IN_A_PID_NAMESPACE, SEND_READY],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as inside:
        assert inside.stdin is not None
        assert inside.stdout is not None
        name = inside.stdout.readline().rstrip("\n")
        subprocess.run([sys.executable, "-c", SEND_READY, name], check=True, timeout=10)
        inside.stdin.write("sent\n")
        inside.stdin.flush()
        result = json.loads(inside.stdout.readline())
        assert inside.wait(timeout=10) == 0
    # The outsider's datagram came with pid 0 and was dropped; the insider's counted.
    assert result["totals"] == {notify.NO_SENDER: 1}
    assert len(result["pids"]) == 1
    assert result["pids"][0] > 1


# --- passing on upstream ---------------------------------------------------------------


def test_upstream_to_an_abstract_socket(receiver: Receiver) -> None:
    inherited = parse_inherited(receiver.socket.env_value)
    assert inherited is not None
    assert inherited.address is not None
    upstream = Upstream(inherited.address)
    try:
        assert upstream.send(Notification(ready=True, status="up", watchdog=True))
        assert not upstream.send(Notification(watchdog=True))  # nothing to pass on
        assert upstream.send(Notification(stopping=True))
    finally:
        upstream.close()
    receiver.pump_until(lambda: len(receiver.messages) == 2)
    assert [n for n, _pid in receiver.messages] == [
        Notification(ready=True, status="up"),
        Notification(stopping=True),
    ]


def test_upstream_to_a_path_and_its_failures(tmp_path: Path) -> None:
    path = str(tmp_path / "notify.sock")
    errors: list[str] = []
    upstream = Upstream(path, on_error=errors.append)
    target = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        assert not upstream.send(Notification(ready=True))  # nobody there yet
        assert not upstream.send(Notification(ready=True))
        assert errors == ["No such file or directory"]  # reported once
        target.bind(path)
        target.settimeout(0.0)
        assert upstream.send(Notification(status="one"))
        assert target.recv(4096) == b"STATUS=one"
        sent = 0
        started = time.monotonic()
        while upstream.send(Notification(ready=True)):  # nobody reads: the queue fills
            sent += 1
            assert sent < 10_000
        assert time.monotonic() - started < 5  # it never waited for the reader
        assert not upstream.send(Notification(ready=True))
        assert errors == ["No such file or directory", "Resource temporarily unavailable"]
        while select.select([target], [], [], 0)[0]:
            target.recv(4096)
        assert upstream.send(Notification(stopping=True))
        assert target.recv(4096) == b"STOPPING=1"
    finally:
        upstream.close()
        target.close()


@pytest.mark.timeout(20)  # the linger time is 60 s: a close that waits for it fails here
def test_a_passed_socket_that_lingers_does_not_stall_the_loop(receiver: Receiver) -> None:
    """close() of a socket with SO_LINGER and unsent data would wait for the linger time."""
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    accepted, _peer = server.accept()  # never read: the client's data cannot drain
    try:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 60))
        client.settimeout(0.0)
        with contextlib.suppress(BlockingIOError):
            while True:
                client.send(b"x" * 65536)
        send(receiver, b"READY=1", [client.fileno()])
        os.close(client.detach())  # the one in flight is the last reference now
        receiver.pump_until(lambda: receiver.messages, timeout=10)
        assert receiver.socket.totals == {notify.FDS_CLOSED: 1}
    finally:
        accepted.close()
        server.close()


class EventLog:
    """A logger that keeps the names of the events it was given."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def info(self, event: str, **_fields: object) -> None:
        self.events.append(event)

    warning = info


def test_what_a_child_said_before_its_exit_is_its_own() -> None:
    # A worker's TERM handler says STOPPING=1 and exits at once: the supervisor
    # may reap it before its loop sees the socket readable (a SIGCHLD pending
    # skips the wait). The datagram is the exited child's, not lost.
    loop = Loop()
    log = EventLog()
    liveness = Liveness(
        notify=True, heartbeat_file=None, watchdog_timeout=0, ready_timeout=0, heartbeat_max_age=0
    )
    watch = LivenessWatch(liveness, loop, publish=lambda: None, logger=log, environ={})
    try:
        assert watch.socket is not None
        watch.child_started(os.getpid(), loop.clock())
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
            sender.sendto(b"STATUS=last words\nSTOPPING=1", watch.socket.name)
        watch.child_exited()  # the loop never ran: the reap came first
        assert log.events == ["child_status", "child_stopping"]
        assert watch.state.stopping
        # What comes after the exit is nobody's: a new child starts afresh.
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
            sender.sendto(b"STATUS=late", watch.socket.name)
        watch.child_started(os.getpid(), loop.clock())
        loop.run_once(0)
        assert log.events == ["child_status", "child_stopping"]
    finally:
        watch.close()
        loop.close()
