"""Signals as events: handlers only record, a wakeup fd wakes the one loop.

The handlers are the ones `boot` installed first thing (they append to
`boot.PENDING`); this module adds SIGCHLD (so a child's exit wakes the loop)
and the wakeup fd, and lets other threads wake the loop too (`notify`).
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal

from entrypoint import boot

SIGNAL_NAMES = {
    "TERM": signal.SIGTERM, "INT": signal.SIGINT, "QUIT": signal.SIGQUIT,
    "HUP": signal.SIGHUP, "USR1": signal.SIGUSR1, "USR2": signal.SIGUSR2,
    "WINCH": signal.SIGWINCH, "TTIN": signal.SIGTTIN, "TTOU": signal.SIGTTOU,
    "TSTP": signal.SIGTSTP, "CONT": signal.SIGCONT, "ALRM": signal.SIGALRM,
    "KILL": signal.SIGKILL,
}  # fmt: skip


def parse_signal(value: str) -> int:
    """`TERM`, `SIGTERM`, `sigterm` or `15` -> 15; ValueError when it names none."""
    text = value.strip().upper()
    if text.isdigit():
        number = int(text)
        if 0 < number < signal.NSIG:
            return number
        raise ValueError(f"no signal number {number}")
    name = text.removeprefix("SIG")
    try:
        return (
            int(getattr(signal, "SIG" + name)) if name not in SIGNAL_NAMES else SIGNAL_NAMES[name]
        )
    except AttributeError:
        raise ValueError(f"unknown signal {value.strip()!r}") from None


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


class SignalInbox:
    """Received signals, and a `wait` that returns as soon as one arrives.

    `wait` blocks in `select` on two pipes: the interpreter's wakeup fd (written
    by the C-level handler of every signal) and a pipe that `notify` writes to
    from any thread. Nothing here polls.
    """

    def __init__(self) -> None:
        self._signal_r, signal_w = os.pipe()
        self._notify_r, self._notify_w = os.pipe()
        for fd in (self._signal_r, signal_w, self._notify_r, self._notify_w):
            os.set_blocking(fd, False)
        self._signal_w = signal_w
        # Order matters: the wakeup fd first, then the handlers, then the check
        # of PENDING in `wait`, so a signal can never fall between the two.
        signal.set_wakeup_fd(signal_w, warn_on_full_buffer=False)
        boot.install_early_handlers()
        signal.signal(signal.SIGCHLD, boot.record_signal)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._signal_r, selectors.EVENT_READ)
        self._selector.register(self._notify_r, selectors.EVENT_READ)
        self._stop: int | None = None

    def close(self) -> None:
        signal.set_wakeup_fd(-1)
        self._selector.close()
        for fd in (self._signal_r, self._signal_w, self._notify_r, self._notify_w):
            os.close(fd)

    @property
    def stop_requested(self) -> bool:
        if self._stop is None:
            self._stop = boot.stop_received()
        return self._stop is not None

    @property
    def stop_signal(self) -> int | None:
        return self._stop if self.stop_requested else None

    def notify(self) -> None:
        """Wake `wait` from any thread."""
        with contextlib.suppress(BlockingIOError):  # full: `wait` wakes anyway
            os.write(self._notify_w, b"\0")

    def wait(self, timeout: float | None) -> None:
        """Block until a signal arrives, `notify` is called, or `timeout` seconds pass."""
        if boot.PENDING:
            return
        if timeout is not None and timeout <= 0:
            return
        for key, _events in self._selector.select(timeout):
            # One read: a pipe with more left stays readable, and the next wait
            # returns at once. The signals themselves are in boot.PENDING.
            with contextlib.suppress(BlockingIOError):
                os.read(key.fd, 4096)

    def take(self) -> list[int]:
        """The signals received since the last call, in order (SIGCHLD included)."""
        taken = boot.PENDING[:]
        del boot.PENDING[: len(taken)]
        if self._stop is None:
            self._stop = next((s for s in taken if s in boot.STOP_SIGNALS), None)
        return taken
