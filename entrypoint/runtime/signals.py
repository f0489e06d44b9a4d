"""Signals as events: the handlers only record, a wakeup fd wakes the one loop.

The handlers are the ones the console script installed first thing
(`sigstate.install`); the inbox adds SIGCHLD (so a child's exit wakes the loop)
and the wakeup fd, and lets other threads wake the loop too (`notify`). It is
the only reader of what the handlers recorded, and the only owner of the fact
"a stop was requested": the first TERM, INT or QUIT taken.
"""

from __future__ import annotations

import _signal
import os

from entrypoint import sigstate

TYPE_CHECKING = False
if TYPE_CHECKING:
    from entrypoint.runtime.loop import Loop


def coalesce(signals: list[int]) -> list[int]:
    """One batch of taken signals as the kernel holds signals pending: each at most once.

    In the order each was first seen. A stop signal (TERM, INT, QUIT) keeps
    its second coming too, since the second is a worker's "stop now" (RQ,
    Celery); a third adds nothing. Under a storm of signals a batch is then
    a few forwards, not one per signal recorded, so the loop keeps serving
    the child's heartbeats, the metrics and the stop's deadlines.
    """
    kept: list[int] = []
    stops = 0
    for signum in signals:
        if signum in sigstate.STOP_SIGNALS:
            if stops < 2:
                kept.append(signum)
                stops += 1
        elif signum not in kept:
            kept.append(signum)
    return kept


class SignalInbox:
    """Received signals, and a `wait` that returns as soon as one arrives.

    `wait` runs the loop, in which two pipes are registered: the interpreter's
    wakeup fd (written by the C-level handler of every signal) and a pipe that
    `notify` writes to from any thread. Nothing here polls. Without a `loop`
    (web mode's last look before its exec) nothing can be waited for.
    """

    def __init__(self, loop: Loop | None = None) -> None:
        self.loop = loop
        self._signal_r, self._signal_w = os.pipe()
        self._notify_r, self._notify_w = os.pipe()
        for fd in (self._signal_r, self._signal_w, self._notify_r, self._notify_w):
            os.set_blocking(fd, False)
        # Order matters: the wakeup fd first, then the handlers, then the check
        # of pending signals in `wait`, so a signal can never fall between them.
        _signal.set_wakeup_fd(self._signal_w, warn_on_full_buffer=False)
        sigstate.install()
        _signal.signal(_signal.SIGCHLD, sigstate.record)
        if loop is not None:
            loop.add_reader(self._signal_r, lambda: self._drain(self._signal_r))
            loop.add_reader(self._notify_r, lambda: self._drain(self._notify_r))
        self._stop: int | None = None

    def close(self) -> None:
        _signal.set_wakeup_fd(-1)
        if self.loop is not None:
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
        try:  # noqa: SIM105 - contextlib would cost web mode's start an import
            os.write(self._notify_w, b"\0")
        except BlockingIOError:
            pass  # full: `wait` wakes anyway

    def wait(self, timeout: float | None) -> None:
        """Block until a signal arrives, `notify` is called, a loop event, or `timeout` passes.

        With a signal already pending it does not block, but still serves what
        is ready on the loop (one poll): under a storm of signals the notify
        socket, the metrics server and the timers go on being served, and a
        heartbeat is never missed because signals kept coming.
        """
        assert self.loop is not None, "an inbox without a loop cannot wait"
        self.loop.run_once(0 if sigstate.pending() else timeout)

    @staticmethod
    def _drain(fd: int) -> None:
        # One read: a pipe with more left stays readable, and the next wait
        # returns at once. The signals themselves are in sigstate.
        try:  # noqa: SIM105 - contextlib would cost web mode's start an import
            os.read(fd, 4096)
        except BlockingIOError:
            pass

    def take(self) -> list[int]:
        """The signals received since the last call, in order (SIGCHLD included)."""
        taken = sigstate.take()
        if self._stop is None:
            self._stop = next((s for s in taken if s in sigstate.STOP_SIGNALS), None)
        return taken
