"""Signals and logging shared by the demo's processes."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class ForcedStop(Exception):
    """A second stop signal arrived while a job was running: stop now."""


class Stop:
    """The first TERM/INT asks for a graceful stop; a second one inside a job forces it.

    The handler only records and wakes the main loop, except inside
    `interruptible()`, where a repeated signal raises ForcedStop so that a job
    stops at once and can be given back to the queue.
    """

    def __init__(self) -> None:
        self.event = threading.Event()
        self.received = 0
        self.signal_name = ""
        self._interruptible = False

    def install(self) -> None:
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.received += 1
        self.signal_name = signal.Signals(signum).name
        self.event.set()
        # Straight to fd 2, not through logging (whose lock the interrupted code may hold).
        forced = self.received > 1 and self._interruptible
        os.write(
            2,
            f"stop_requested signal={self.signal_name} count={self.received}"
            f" action={'stop_now' if forced else 'finish_job_then_exit'}\n".encode(),
        )
        if forced:
            raise ForcedStop(signal.Signals(signum).name)

    @property
    def requested(self) -> bool:
        return self.event.is_set()

    def wait(self, timeout: float) -> bool:
        """Sleep up to `timeout` seconds; True at once when a stop was requested."""
        return self.event.wait(timeout)

    @contextmanager
    def interruptible(self) -> Iterator[None]:
        self._interruptible = True
        try:
            if self.received > 1:
                raise ForcedStop("stop requested twice")
            yield
        finally:
            self._interruptible = False


def setup_logging(name: str) -> logging.Logger:
    """One line per event on stderr: `time level name event key=value ...`."""
    level = os.environ.get("DEMO_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    return logging.getLogger(name)


def fail(program: str, message: str, code: int) -> int:
    """One clear line on stderr, and the exit status to return."""
    sys.stderr.write(f"{program}: error: {message}\n")
    return code
