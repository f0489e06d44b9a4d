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
# The longest single wait: epoll takes its timeout in milliseconds as a C int
# (24.8 days). A deadline further away (ENTRYPOINT_WAIT_TIMEOUT=999999999 is
# "forever" to many) costs one wakeup a day, after which the caller waits again.
MAX_WAIT = 86400.0


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


class _Handlers:
    """The callbacks of one registered fd; both None once it is unregistered."""

    __slots__ = ("reader", "writer")

    def __init__(self) -> None:
        self.reader: Callback | None = None
        self.writer: Callback | None = None

    @property
    def events(self) -> int:
        return (selectors.EVENT_READ if self.reader else 0) | (
            selectors.EVENT_WRITE if self.writer else 0
        )


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
        """Call `callback()` whenever `fileobj` is readable; KeyError if it has a reader."""
        self._add(fileobj, callback, writer=False)

    def remove_reader(self, fileobj: int | FileLike) -> None:
        """Forget the reader of `fileobj`; KeyError if it has none."""
        self._remove(fileobj, writer=False)

    def add_writer(self, fileobj: int | FileLike, callback: Callback) -> None:
        """Call `callback()` whenever `fileobj` is writable; KeyError if it has a writer."""
        self._add(fileobj, callback, writer=True)

    def remove_writer(self, fileobj: int | FileLike) -> None:
        """Forget the writer of `fileobj`; KeyError if it has none."""
        self._remove(fileobj, writer=True)

    def _add(self, fileobj: int | FileLike, callback: Callback, *, writer: bool) -> None:
        try:
            handlers: _Handlers = self._selector.get_key(fileobj).data
        except KeyError:
            handlers = _Handlers()
        if (handlers.writer if writer else handlers.reader) is not None:
            raise KeyError(f"{fileobj!r} already has a {'writer' if writer else 'reader'}")
        was = handlers.events
        if writer:
            handlers.writer = callback
        else:
            handlers.reader = callback
        if was:
            self._selector.modify(fileobj, handlers.events, handlers)
        else:
            self._selector.register(fileobj, handlers.events, handlers)

    def _remove(self, fileobj: int | FileLike, *, writer: bool) -> None:
        handlers: _Handlers = self._selector.get_key(fileobj).data
        if (handlers.writer if writer else handlers.reader) is None:
            raise KeyError(f"{fileobj!r} has no {'writer' if writer else 'reader'}")
        if writer:
            handlers.writer = None
        else:
            handlers.reader = None
        if handlers.events:
            self._selector.modify(fileobj, handlers.events, handlers)
        else:
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
        if timeout is not None:
            timeout = min(max(timeout, 0.0), MAX_WAIT)
        for key, events in self._selector.select(timeout):
            handlers: _Handlers = key.data
            # Looked up at each call: a callback earlier in this batch may have
            # removed this fd's callbacks (and closed it).
            if events & selectors.EVENT_READ and handlers.reader is not None:
                handlers.reader()
            if events & selectors.EVENT_WRITE and handlers.writer is not None:
                handlers.writer()
        now = self.clock()
        while self._timers and self._timers[0][0] <= now:
            _when, _order, timer = heapq.heappop(self._timers)
            if not timer.cancelled:
                timer.cancel()  # fired: a later cancel() is a no-op
                timer.callback()
