"""The one place the supervisor waits: a selector over file descriptors, and timers.

Everything the supervisor reacts to arrives here: signals (through the wakeup
fd), datagrams on the notify socket, scrapers on the metrics port, and the
deadlines of features that need a look now and then (memory, heartbeat file).
`run_once` blocks until one of them is due, runs its callback, and returns, so
that the caller (a phase of the supervisor) decides what to do next. With no
fd ready and no timer set it blocks for as long as the caller allows: nothing
here polls.

Callbacks only record facts and answer peers; decisions stay with the caller.
"""

from __future__ import annotations

import heapq
import itertools
import selectors
import time
from collections.abc import Callable
from typing import Protocol

Callback = Callable[[], None]


class FileLike(Protocol):
    def fileno(self) -> int: ...


class Timer:
    """A callback due at a monotonic time; `cancel` makes it a no-op."""

    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callback) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Loop:
    """A selector and a heap of timers, driven by `run_once`."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._selector = selectors.DefaultSelector()
        self._timers: list[tuple[float, int, Timer]] = []
        self._order = itertools.count()

    def close(self) -> None:
        self._selector.close()

    def add_reader(self, fileobj: int | FileLike, callback: Callback) -> None:
        self._selector.register(fileobj, selectors.EVENT_READ, callback)

    def remove_reader(self, fileobj: int | FileLike) -> None:
        self._selector.unregister(fileobj)

    def call_at(self, when: float, callback: Callback) -> Timer:
        timer = Timer(when, callback)
        heapq.heappush(self._timers, (when, next(self._order), timer))
        return timer

    def call_later(self, delay: float, callback: Callback) -> Timer:
        return self.call_at(self.clock() + delay, callback)

    def next_timer(self) -> float | None:
        """When the next live timer is due, if any."""
        while self._timers and self._timers[0][2].cancelled:
            heapq.heappop(self._timers)
        return self._timers[0][0] if self._timers else None

    def run_once(self, timeout: float | None) -> None:
        """Wait at most `timeout` seconds (None: no limit) for an fd or a timer; run them."""
        due = self.next_timer()
        if due is not None:
            until_timer = max(0.0, due - self.clock())
            timeout = until_timer if timeout is None else min(timeout, until_timer)
        if timeout is not None and timeout < 0:
            timeout = 0.0
        for key, _events in self._selector.select(timeout):
            callback: Callback = key.data
            callback()
        now = self.clock()
        while self._timers and self._timers[0][0] <= now:
            _when, _order, timer = heapq.heappop(self._timers)
            if not timer.cancelled:
                timer.cancel()  # fired: a later cancel() is a no-op
                timer.callback()
