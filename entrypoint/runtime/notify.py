"""The notify socket: systemd's sd_notify protocol, received as its service manager does.

With `ENTRYPOINT_NOTIFY=1` the child finds `NOTIFY_SOCKET` in its environment
and sends datagrams there, as it would under a `Type=notify` unit. This module
holds the three parts of that, and nothing decides here:

- `parse`: one datagram (bytes) -> a `Notification` value. Pure.
- `NotifySocket`: the receiving socket, registered with the `Loop`; it checks
  each datagram as systemd's `manager_dispatch_notify_fd` does, closes every
  file descriptor that came with it (that close is the answer to `BARRIER=1`),
  and hands each notification to the caller with the sender's pid.
- `Upstream`: passes `READY=1`, `STATUS=` and `STOPPING=1` on to the socket the
  entrypoint itself was given (podman `--sdnotify=container`), never blocking.

And two pure functions for the caller: `advance`, which folds notifications
into what the child has said (`ChildState`: ready, stopping, status) by
systemd's rules, and `child_environment`, which gives the child its
`NOTIFY_SOCKET` (and `WATCHDOG_USEC`, `WATCHDOG_PID`).

Limits follow systemd (src/core/manager.c, src/shared/notify-recv.c,
src/core/service.c): a datagram is at most `NOTIFY_BUFFER_MAX` bytes (PIPE_BUF),
larger ones are dropped whole; a datagram with a NUL byte anywhere but at the
end is dropped whole; one without the sender's credentials is dropped whole
(the kernel gives a sender in a pid namespace this one cannot see pid 0, which
is how a process outside the container, sharing only its network namespace,
is told apart); invalid UTF-8 matters only in `STATUS=`, whose text is then
dropped (systemd clears the status), everything else in that datagram counts.
"""

from __future__ import annotations

import array
import contextlib
import os
import re
import socket
import stat
import struct
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from entrypoint.runtime.loop import Loop, Timer

NOTIFY_BUFFER_MAX = 4096
"""systemd's bound (PIPE_BUF): a longer datagram is dropped whole."""

NOTIFY_FD_MAX = 768
"""systemd's: the ancillary buffer has room for this many fds (the kernel passes at most 253)."""

STATUS_MAX = 1024
"""Characters of `STATUS=` text kept; a longer text is cut and ends with an ellipsis."""

READS_PER_WAKEUP = 32
"""Datagrams read per wakeup at most; the fd stays readable, so the loop comes back."""

RCVBUF = 256 * 1024
"""SO_RCVBUF asked for: room for 64 datagrams of the largest size (see `NotifySocket`)."""

WARN_WINDOW_S = 10.0
"""A reason to ignore datagrams is logged at once, then at most once per this many seconds."""

_UCRED = struct.Struct("iII")  # struct ucred: pid, uid, gid
_FD_SIZE = array.array("i").itemsize
_ANCILLARY = socket.CMSG_SPACE(_UCRED.size) + socket.CMSG_SPACE(_FD_SIZE * NOTIFY_FD_MAX)
_SEPARATORS = re.compile(rb"[\n\r]+")
# systemd's safe_atou64: leading blanks, an optional plus sign, decimal digits.
_USEC = re.compile(rb"[ \t]*\+?([0-9]+)")
_U64_MAX = 2**64 - 1
# What systemd's utf8_is_valid() refuses beyond Python's codec: noncharacters.
_NONCHARACTERS = re.compile(
    "[\ufdd0-\ufdef"
    + "".join(chr(plane + 0xFFFE) + chr(plane + 0xFFFF) for plane in range(0, 0x110000, 0x10000))
    + "]"
)


# Reasons a datagram, or a part of one, was ignored: the `reason` of `notify_ignored`.
TOO_LARGE = "too_large"  # longer than NOTIFY_BUFFER_MAX (MSG_TRUNC)
CONTROL_TRUNCATED = "control_truncated"  # ancillary data cut (MSG_CTRUNC): too many fds
NUL_BYTE = "nul_byte"  # a NUL byte before the end
NO_SENDER = "no_sender"  # no credentials, or a pid this namespace cannot see
STATUS_NOT_UTF8 = "status_not_utf8"  # STATUS= text is not UTF-8: the status is cleared
BAD_EXTEND_TIMEOUT = "bad_extend_timeout"  # EXTEND_TIMEOUT_USEC= is not a 64-bit count
BAD_WATCHDOG = "bad_watchdog"  # WATCHDOG= is neither 1 nor trigger
BARRIER_MIXED = "barrier_mixed"  # BARRIER=1 with other assignments: all of it ignored
BARRIER_FDS = "barrier_fds"  # BARRIER=1 with no fd or several: all closed
FDS_CLOSED = "fds_closed"  # fds that came without BARRIER=1: closed
RECEIVE_FAILED = "receive_failed"  # recvmsg failed for a reason other than "nothing there"


@dataclass(frozen=True, slots=True)
class Notification:
    """What one datagram says, in systemd's terms.

    `status` is None when the datagram has no `STATUS=`, and "" when it clears
    the status (an empty `STATUS=`, or text that is not UTF-8). The text is kept
    as sent, control characters included (newlines cannot occur: they separate
    assignments), at most `STATUS_MAX` characters: whoever shows it escapes it.
    `problems` names what was ignored in it, each reason once, at most a few.
    """

    ready: bool = False
    stopping: bool = False
    watchdog: bool = False
    watchdog_trigger: bool = False
    status: str | None = None
    extend_timeout_usec: int | None = None
    barrier: bool = False
    problems: tuple[str, ...] = ()

    @property
    def acts(self) -> bool:
        """Whether it asks for anything (a barrier is answered by the socket, not here)."""
        return (
            self.ready
            or self.stopping
            or self.watchdog
            or self.watchdog_trigger
            or self.status is not None
            or self.extend_timeout_usec is not None
        )


def parse(datagram: bytes) -> Notification:
    """One notification datagram -> what it says. Never raises; the result is bounded.

    Assignments are separated by newlines (systemd splits on "\\n" and "\\r" and
    skips empty lines). `READY=1`, `STOPPING=1` and `BARRIER=1` count when a line
    is exactly that; `STATUS=`, `WATCHDOG=` and `EXTEND_TIMEOUT_USEC=` are taken
    from their first line, as systemd's `strv_find_startswith` does. `BARRIER=1`
    makes the datagram a barrier and nothing else in it counts. Every other
    assignment (`RELOADING=1`, `MAINPID=`, `ERRNO=`, `FDSTORE=1`...) is ignored.
    """
    if len(datagram) > NOTIFY_BUFFER_MAX:
        return Notification(problems=(TOO_LARGE,))
    if datagram.endswith(b"\0"):
        datagram = datagram[:-1]  # one trailing NUL is permitted, as in systemd
    if b"\0" in datagram:
        return Notification(problems=(NUL_BYTE,))
    lines = [line for line in _SEPARATORS.split(datagram) if line]
    if b"BARRIER=1" in lines:
        return Notification(barrier=True, problems=(BARRIER_MIXED,) if len(lines) > 1 else ())

    problems: list[str] = []
    status = _first(lines, b"STATUS=")
    text: str | None = None
    if status is not None:
        try:
            text = status.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is None or _NONCHARACTERS.search(text):
            text = ""
            problems.append(STATUS_NOT_UTF8)
        if len(text) > STATUS_MAX:
            text = text[: STATUS_MAX - 1] + "\N{HORIZONTAL ELLIPSIS}"

    watchdog = _first(lines, b"WATCHDOG=")
    if watchdog not in (None, b"1", b"trigger"):
        problems.append(BAD_WATCHDOG)

    extend: int | None = None
    usec = _first(lines, b"EXTEND_TIMEOUT_USEC=")
    if usec is not None:
        match = _USEC.fullmatch(usec)
        if match and int(match[1]) <= _U64_MAX:
            extend = int(match[1])
        else:
            problems.append(BAD_EXTEND_TIMEOUT)

    return Notification(
        ready=b"READY=1" in lines,
        stopping=b"STOPPING=1" in lines,
        watchdog=watchdog == b"1",
        watchdog_trigger=watchdog == b"trigger",
        status=text,
        extend_timeout_usec=extend,
        problems=tuple(problems),
    )


def _first(lines: list[bytes], prefix: bytes) -> bytes | None:
    for line in lines:
        if line.startswith(prefix):
            return line[len(prefix) :]
    return None


@dataclass(frozen=True, slots=True)
class ChildState:
    """What the child has said so far: one per child, a new child starts from `ChildState()`."""

    ready: bool = False
    stopping: bool = False
    status: str = ""


def advance(state: ChildState, notification: Notification) -> ChildState:
    """`state` after `notification`, by systemd's rules (service_notify_message_process_state).

    `STOPPING=1` wins over `READY=1` in the same datagram, and a child that
    said it is stopping cannot become ready again. `STATUS=` replaces the
    status ("" clears it); a datagram without one leaves it as it was.
    """
    status = state.status if notification.status is None else notification.status
    if notification.stopping or state.stopping:
        return ChildState(ready=False, stopping=True, status=status)
    return ChildState(ready=state.ready or notification.ready, status=status)


OnMessage = Callable[[Notification, int], None]
OnIgnored = Callable[[str, int, int | None], None]


def log_ignored(reason: str, count: int, sender_pid: int | None) -> None:
    """The default report: one `notify_ignored` warning (reason, count, sender_pid)."""
    from entrypoint.runtime.log import get_logger

    get_logger().warning("notify_ignored", reason=reason, count=count, sender_pid=sender_pid)


class RateLimited:
    """Reports of ignored datagrams, at most one per reason per `window` seconds.

    The first of a reason is reported at once (count 1); the ones that follow
    within the window are counted and reported together when it ends, by a
    timer set only while some are waiting: a quiet socket costs no wakeup.
    """

    def __init__(self, loop: Loop, report: OnIgnored, window: float = WARN_WINDOW_S) -> None:
        self._loop = loop
        self._report = report
        self._window = window
        self._quiet_until: dict[str, float] = {}
        self._pending: dict[str, tuple[int, int | None]] = {}
        self._timers: dict[str, Timer] = {}

    def add(self, reason: str, sender_pid: int | None) -> None:
        now = self._loop.clock()
        if reason not in self._pending and now >= self._quiet_until.get(reason, now):
            self._quiet_until[reason] = now + self._window
            self._report(reason, 1, sender_pid)
            return
        count, _pid = self._pending.get(reason, (0, None))
        self._pending[reason] = (count + 1, sender_pid)
        if reason not in self._timers:
            when = self._quiet_until[reason]
            self._timers[reason] = self._loop.call_at(when, lambda: self._flush(reason))

    def _flush(self, reason: str) -> None:
        del self._timers[reason]
        count, sender_pid = self._pending.pop(reason, (0, None))
        if count:
            self._quiet_until[reason] = self._loop.clock() + self._window
            self._report(reason, count, sender_pid)

    def close(self) -> None:
        """Report what is still waiting, and set no more timers."""
        for reason, timer in list(self._timers.items()):
            timer.cancel()
            self._flush(reason)


class NotifySocket:
    """A unix datagram socket bound to an abstract name, as systemd's notify socket.

    The name is `\\0entrypoint/notify/<pid>/<random hex>`: no file, so it works
    on a read-only root filesystem; `env_value` is that name as `NOTIFY_SOCKET`
    spells it (a leading `@`). Abstract names live in the network namespace, so
    a process that shares only that (a pod's sidecar, the host under
    `--network=host`) can reach the socket too; its datagrams arrive with pid 0
    and are dropped, as systemd drops datagrams without valid credentials.
    Every process of the container may send (`NotifyAccess=all`).

    Queue: Linux bounds an AF_UNIX datagram socket's queue by
    `net.unix.max_dgram_qlen` (10 in a new network namespace: 11 datagrams
    wait at most, whatever SO_RCVBUF says) and charges each queued datagram to
    its sender's send buffer. A sender past that gets EAGAIN, or waits if it
    blocks (sd_notify does), exactly as under systemd. SO_RCVBUF is asked for
    anyway (`RCVBUF`, as systemd asks for 8 MiB) for the kernels that count it.

    `on_ignored(reason, count, sender_pid)` is called rate-limited (see
    `RateLimited`) once registered; by default it logs `notify_ignored`.
    `totals` counts every ignored datagram (or part of one) by reason.
    Holds one fd; costs nothing until a datagram arrives.
    """

    def __init__(self, *, on_ignored: OnIgnored = log_ignored, warn_window: float = WARN_WINDOW_S):
        self.name = f"\0entrypoint/notify/{os.getpid()}/{os.urandom(8).hex()}"
        self.totals: dict[str, int] = {}
        self._on_ignored = on_ignored
        self._warn_window = warn_window
        self._loop: Loop | None = None
        self._warnings: RateLimited | None = None
        self._on_message: OnMessage | None = None
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            self._sock.settimeout(0.0)
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            with contextlib.suppress(OSError):
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
            self._sock.bind(self.name)
        except BaseException:
            self._sock.close()
            raise

    @property
    def env_value(self) -> str:
        """What the child's `NOTIFY_SOCKET` is: `@entrypoint/notify/<pid>/<hex>`."""
        return "@" + self.name[1:]

    def fileno(self) -> int:
        return self._sock.fileno()

    def register(self, loop: Loop, on_message: OnMessage) -> None:
        """Read datagrams whenever `loop` sees the socket readable; `on_message(n, pid)` for each.

        `on_message` gets every datagram that passed the checks and asks for
        something (`Notification.acts`), with the sender's pid; barriers are
        answered here and not passed on. It runs inside the loop's callback:
        it must only record.
        """
        self._loop = loop
        self._warnings = RateLimited(loop, self._on_ignored, self._warn_window)
        self._on_message = on_message
        loop.add_reader(self._sock, self._readable)

    def discard(self) -> int:
        """Read and drop what is queued now (call it before a new child starts); how many.

        Their fds are closed (barriers answered) and their problems counted.
        """
        return sum(1 for _ in self._receive(READS_PER_WAKEUP))

    def deliver_queued(self) -> None:
        """Hand on what is queued now, as if the Loop had seen the socket readable.

        For a child that just exited: what it said before its exit (a last
        STOPPING=1 or STATUS=) is still its own, whether its exit or its
        datagram reached the supervisor first. systemd reads its notify socket
        before SIGCHLD for the same reason.
        """
        self._readable()

    def close(self) -> None:
        self._unregister()
        if self._warnings is not None:
            self._warnings.close()
        self._sock.close()

    def __enter__(self) -> NotifySocket:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _unregister(self) -> None:
        if self._on_message is not None and self._loop is not None:
            self._on_message = None
            with contextlib.suppress(KeyError, ValueError):
                self._loop.remove_reader(self._sock)

    def _ignore(self, reason: str, pid: int | None) -> None:
        self.totals[reason] = self.totals.get(reason, 0) + 1
        if self._warnings is not None:
            self._warnings.add(reason, pid)

    def _readable(self) -> None:
        for notification, pid in self._receive(READS_PER_WAKEUP):
            on_message = self._on_message
            if on_message is not None and notification.acts:
                on_message(notification, pid)

    def _receive(self, budget: int) -> Iterator[tuple[Notification, int]]:
        """Up to `budget` datagrams that passed the socket-level checks, parsed."""
        for _ in range(budget):
            try:
                data, ancillary, flags, _address = self._sock.recvmsg(
                    NOTIFY_BUFFER_MAX, _ANCILLARY, socket.MSG_DONTWAIT | socket.MSG_CMSG_CLOEXEC
                )
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                # As systemd: stop reading rather than be woken for ever by a
                # socket that cannot be read. The watchdog sees the silence.
                self._ignore(RECEIVE_FAILED, None)
                self._unregister()
                return
            fds, pid = _ancillary_data(ancillary)
            # Every fd is closed before anything else is looked at: nothing
            # the peer sends can make one stay open (and a barrier waits on it).
            _close_all(fds)
            if flags & socket.MSG_CTRUNC:
                self._ignore(CONTROL_TRUNCATED, pid)
                continue
            if flags & socket.MSG_TRUNC:
                self._ignore(TOO_LARGE, pid)
                continue
            if pid is None:
                self._ignore(NO_SENDER, None)
                continue
            notification = parse(data)
            for reason in notification.problems:
                self._ignore(reason, pid)
            if notification.barrier:
                if len(fds) != 1:
                    self._ignore(BARRIER_FDS, pid)
            elif fds:
                self._ignore(FDS_CLOSED, pid)
            yield notification, pid


def _ancillary_data(ancillary: list[tuple[int, int, bytes]]) -> tuple[list[int], int | None]:
    """The fds and the sender's pid in a datagram's ancillary data."""
    fds: list[int] = []
    pid: int | None = None
    for level, kind, data in ancillary:
        if level != socket.SOL_SOCKET:
            continue
        if kind == socket.SCM_RIGHTS:
            received = array.array("i")
            received.frombytes(data[: len(data) - len(data) % _FD_SIZE])
            fds.extend(received)
        elif kind == socket.SCM_CREDENTIALS and len(data) >= _UCRED.size:
            pid = _UCRED.unpack_from(data)[0]
    return fds, pid if pid and pid > 0 else None


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            # close() of the last reference to a socket with SO_LINGER set
            # waits for its data to drain: a peer could pass one to stall the
            # loop. With linger off, close returns at once.
            if stat.S_ISSOCK(os.fstat(fd).st_mode):
                _linger_off(fd)
        with contextlib.suppress(OSError):
            os.close(fd)


def _linger_off(fd: int) -> None:
    sock = socket.socket(fileno=fd)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 0, 0))
    finally:
        sock.detach()


@dataclass(frozen=True, slots=True)
class Inherited:
    """The entrypoint's own `NOTIFY_SOCKET`: where to pass notifications on, or why not.

    `address` is a path, or an abstract name as bytes starting with NUL; None
    with `reason` when the value cannot be used (it is then ignored).
    """

    address: str | bytes | None
    reason: str = ""


_SUN_PATH_MAX = 108  # sizeof(sockaddr_un.sun_path)


def parse_inherited(value: str | None) -> Inherited | None:
    """`NOTIFY_SOCKET` as sd_notify reads it: `/path` or `@abstract`; None when unset or empty.

    Anything else (a relative path, `vsock:...`, too long for `sun_path`) is
    an `Inherited` without address and with the reason.
    """
    if not value:
        return None
    encoded = os.fsencode(value)
    if value.startswith("@"):
        if len(encoded) > _SUN_PATH_MAX:
            return Inherited(None, "the abstract name is longer than 107 bytes")
        return Inherited(b"\0" + encoded[1:])
    if value.startswith("/"):
        if len(encoded) >= _SUN_PATH_MAX:
            return Inherited(None, "the path is longer than 107 bytes")
        return Inherited(value)
    if value.startswith("vsock:"):
        return Inherited(None, "vsock addresses are not supported")
    return Inherited(None, "neither an absolute path nor an @abstract name")


def upstream_datagram(notification: Notification) -> bytes:
    """What is passed on: `READY=1`, `STATUS=...`, `STOPPING=1`, in that order; b"" for nothing."""
    lines: list[bytes] = []
    if notification.ready:
        lines.append(b"READY=1")
    if notification.status is not None:
        lines.append(b"STATUS=" + notification.status.encode("utf-8"))
    if notification.stopping:
        lines.append(b"STOPPING=1")
    return b"\n".join(lines)


def log_upstream_failed(reason: str) -> None:
    """The default report of `Upstream`: one `notify_upstream_failed` warning (reason)."""
    from entrypoint.runtime.log import get_logger

    get_logger().warning("notify_upstream_failed", reason=reason)


class Upstream:
    """The socket the entrypoint was given, to pass `READY=1`, `STATUS=`, `STOPPING=1` on to.

    Sending never blocks (MSG_DONTWAIT): a full or absent receiver loses the
    message. A failure is reported once through `on_error(reason)` and then
    swallowed until a send succeeds again (by default it logs
    `notify_upstream_failed`). Holds one fd, an unbound socket.
    """

    def __init__(
        self, address: str | bytes, on_error: Callable[[str], None] = log_upstream_failed
    ) -> None:
        self.address = address
        self._on_error = on_error
        self._failing = False
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._sock.settimeout(0.0)

    def send(self, notification: Notification) -> bool:
        """Pass on what `notification` says of readiness, status and stopping; True when sent."""
        datagram = upstream_datagram(notification)
        return bool(datagram) and self.send_raw(datagram)

    def send_raw(self, datagram: bytes) -> bool:
        try:
            self._sock.sendto(datagram, socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL, self.address)
        except OSError as exc:
            if not self._failing:
                self._failing = True
                self._on_error(exc.strerror or type(exc).__name__)
            return False
        self._failing = False
        return True

    def close(self) -> None:
        self._sock.close()


NOTIFY_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def child_environment(
    environ: Mapping[str, str],
    socket_value: str,
    *,
    watchdog_usec: int = 0,
    watchdog_pid: int | None = None,
) -> dict[str, str]:
    """The child's environment: `environ` with our `NOTIFY_SOCKET` (and watchdog) in it.

    Inherited `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` speak of the
    entrypoint's own manager, not of us: they are replaced or removed. With a
    watchdog (`watchdog_usec` > 0, microseconds) the child gets
    `WATCHDOG_USEC`, and `WATCHDOG_PID` only when `watchdog_pid` is given: it
    must be the pid of the process that will read it (systemd computes it in
    the forked child, before exec). sd_watchdog_enabled() treats a
    `WATCHDOG_PID` that is not its own pid as "no watchdog", and an absent
    one as "the watchdog is mine".
    """
    env = {name: value for name, value in environ.items() if name not in NOTIFY_VARIABLES}
    env["NOTIFY_SOCKET"] = socket_value
    if watchdog_usec > 0:
        env["WATCHDOG_USEC"] = str(watchdog_usec)
        if watchdog_pid is not None:
            env["WATCHDOG_PID"] = str(watchdog_pid)
    return env
