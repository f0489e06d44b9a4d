"""A real `Loop` run in a thread of the test, as the supervisor runs it: `run_once(None)`.

Everything that touches the loop (creating a server, closing it, reading its
counters) is sent to the loop's own thread with `call`, which wakes it
through a pipe registered like any other fd. `wakeups` counts the returns of
`run_once`: while nothing happens it must not move. A `ticker` is a timer
that re-arms itself, and an `echo` fd answers each byte written to it: both
show that the loop keeps serving timers and other fds while peers misbehave.
"""

from __future__ import annotations

import gc
import itertools
import os
import queue
import select
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from entrypoint.runtime.loop import Loop

T = TypeVar("T")


class LoopThread:
    def __init__(self) -> None:
        self.skew = 0.0  # seconds added to the loop's clock: `advance` moves time on, no sleep
        self.loop = Loop(clock=lambda: time.monotonic() + self.skew)
        self.wakeups = 0
        self.ticks: list[float] = []
        self._calls: queue.Queue[tuple[Callable[[], Any], queue.Queue[tuple[bool, Any]]]] = (
            queue.Queue()
        )
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._echo_in_r, self.echo_in = os.pipe()
        self.echo_out, self._echo_out_w = os.pipe()
        os.set_blocking(self._echo_in_r, False)
        self._running = True
        self.loop.add_reader(self._wake_r, self._run_calls)
        self.loop.add_reader(self._echo_in_r, self._echo)
        self._thread = threading.Thread(target=self._main, name="loop", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        while self._running:
            self.loop.run_once(None)
            self.wakeups += 1

    def _run_calls(self) -> None:
        os.read(self._wake_r, 4096)
        while True:
            try:
                function, reply = self._calls.get_nowait()
            except queue.Empty:
                return
            try:
                reply.put((True, function()))
            except BaseException as exc:  # handed back to the caller
                reply.put((False, exc))

    def _echo(self) -> None:
        data = os.read(self._echo_in_r, 4096)
        os.write(self._echo_out_w, data)

    def call(self, function: Callable[[], T], timeout: float = 10) -> T:
        """Run `function()` on the loop's thread and return its result (or raise its error)."""
        reply: queue.Queue[tuple[bool, Any]] = queue.Queue()
        self._calls.put((function, reply))
        os.write(self._wake_w, b"\0")
        ok, value = reply.get(timeout=timeout)
        if not ok:
            raise value
        result: T = value
        return result

    def advance(self, seconds: float) -> None:
        """Move the loop's clock on by `seconds` (its timers fire as if that much time passed)."""

        def move() -> None:
            self.skew += seconds

        self.call(move)

    def start_ticker(self, interval: float) -> None:
        def tick() -> None:
            self.ticks.append(time.monotonic())
            if self._running:
                self.loop.call_later(interval, tick)

        self.call(lambda: self.loop.call_later(interval, tick))

    def echo_latency(self, timeout: float = 5) -> float:
        """Seconds for a byte to go through the loop's echo fd."""
        started = time.monotonic()
        os.write(self.echo_in, b"x")
        os.set_blocking(self.echo_out, True)
        ready = select.select([self.echo_out], [], [], timeout)[0]
        if not ready:
            raise TimeoutError("the loop did not echo")
        os.read(self.echo_out, 1)
        return time.monotonic() - started

    def max_tick_gap(self, since: float) -> float:
        ticks = [t for t in self.ticks if t >= since]
        return max((b - a for a, b in itertools.pairwise(ticks)), default=0.0)

    def stop(self) -> None:
        def halt() -> None:
            self._running = False

        self.call(halt)
        self._thread.join(10)
        self.loop.close()
        for fd in (
            self._wake_r,
            self._wake_w,
            self._echo_in_r,
            self.echo_in,
            self.echo_out,
            self._echo_out_w,
        ):
            os.close(fd)


def open_fds() -> set[int]:
    """This process's open fds, after the collector has closed what earlier tests dropped."""
    gc.collect()
    return {int(name) for name in os.listdir("/proc/self/fd")}


def fds_left(before: set[int]) -> set[int]:
    """The fds open now that were not open `before`: those a test leaked.

    A difference, not a count: an fd of another test's that closes meanwhile
    (a socket the collector reaps, a daemon thread's pipe) must not hide a
    leak or fake one.
    """
    return open_fds() - before
