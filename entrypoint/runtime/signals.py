"""Signals as events: the handlers only record, a wakeup fd wakes the one loop.

The handlers are the ones the console script installed first thing
(`sigstate.install`); the inbox adds SIGCHLD (so a child's exit wakes the loop)
and the wakeup fd, and lets other threads wake the loop too (`notify`). It is
the only reader of what the handlers recorded, and the only owner of the fact
"a stop was requested": the first TERM, INT or QUIT taken.
"""

from __future__ import annotations

import _signal
import contextlib
import os

from entrypoint import sigstate
from entrypoint.runtime.loop import Loop

SIGNAL_NAMES = {
    name: getattr(_signal, "SIG" + name) for name in (*sigstate.FORWARDED_NAMES, "KILL")
}


def parse_signal(value: str) -> int:
    """`TERM`, `SIGTERM`, `sigterm` or `15` -> 15; ValueError when it names none."""
    text = value.strip().upper()
    if text.isdigit():
        number = int(text)
        if 0 < number < _signal.NSIG:
            return number
        raise ValueError(f"no signal number {number}")
    name = text.removeprefix("SIG")
    found: object = SIGNAL_NAMES.get(name, getattr(_signal, "SIG" + name, None))
    if not isinstance(found, int) or name.startswith("_"):
        raise ValueError(f"unknown signal {value.strip()!r}")
    return found


signal_name = sigstate.signal_name


class SignalInbox:
    """Received signals, and a `wait` that returns as soon as one arrives.

    `wait` runs the loop, in which two pipes are registered: the interpreter's
    wakeup fd (written by the C-level handler of every signal) and a pipe that
    `notify` writes to from any thread. Nothing here polls.
    """

    def __init__(self, loop: Loop | None = None) -> None:
        self.loop = loop if loop is not None else Loop()
        self._signal_r, self._signal_w = os.pipe()
        self._notify_r, self._notify_w = os.pipe()
        for fd in (self._signal_r, self._signal_w, self._notify_r, self._notify_w):
            os.set_blocking(fd, False)
        # Order matters: the wakeup fd first, then the handlers, then the check
        # of pending signals in `wait`, so a signal can never fall between them.
        _signal.set_wakeup_fd(self._signal_w, warn_on_full_buffer=False)
        sigstate.install()
        _signal.signal(_signal.SIGCHLD, sigstate.record)
        self.loop.add_reader(self._signal_r, lambda: self._drain(self._signal_r))
        self.loop.add_reader(self._notify_r, lambda: self._drain(self._notify_r))
        self._stop: int | None = None

    def close(self) -> None:
        _signal.set_wakeup_fd(-1)
        self.loop.remove_reader(self._signal_r)
        self.loop.remove_reader(self._notify_r)
        for fd in (self._signal_r, self._signal_w, self._notify_r, self._notify_w):
            os.close(fd)

    @property
    def stop_signal(self) -> int | None:
        """The first stop signal taken so far, if any."""
        return self._stop

    @property
    def stop_requested(self) -> bool:
        return self._stop is not None

    def notify(self) -> None:
        """Wake `wait` from any thread."""
        with contextlib.suppress(BlockingIOError):  # full: `wait` wakes anyway
            os.write(self._notify_w, b"\0")

    def wait(self, timeout: float | None) -> None:
        """Block until a signal arrives, `notify` is called, a loop event, or `timeout` passes."""
        if sigstate.pending():
            return
        self.loop.run_once(timeout)

    @staticmethod
    def _drain(fd: int) -> None:
        # One read: a pipe with more left stays readable, and the next wait
        # returns at once. The signals themselves are in sigstate.
        with contextlib.suppress(BlockingIOError):
            os.read(fd, 4096)

    def take(self) -> list[int]:
        """The signals received since the last call, in order (SIGCHLD included)."""
        taken = sigstate.take()
        if self._stop is None:
            self._stop = next((s for s in taken if s in sigstate.STOP_SIGNALS), None)
        return taken
