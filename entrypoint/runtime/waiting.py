"""Waiting for dependencies: tenacity around the probes, one thread per dependency.

`wait_for` retries transient failures with exponential backoff and jitter until
the deadline, ends at once on a permanent failure, and returns within a second
of a stop signal (the probe threads are daemons: one blocked in a socket never
delays the exit). `check` is one attempt per dependency, for `entrypoint check`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import tenacity

from entrypoint.errors import UnavailableError
from entrypoint.plan.redact import redact_text
from entrypoint.plan.urls import Depth, Scheme
from entrypoint.probes import ProbeError, probe
from entrypoint.runtime.log import get_logger

if TYPE_CHECKING:
    from entrypoint.plan.urls import Dependency

# An attempt with less time than this left is not worth starting.
MIN_ATTEMPT = 0.1
# dependency_waiting: on the first failure, then at most this often per dependency.
LOG_EVERY = 5.0
# How long past its deadline a stuck probe thread is waited for before giving up on it.
GRACE = 1.0
# libpq's connect timeout is whole seconds, at least 2 (see probes.postgres.login).
LIBPQ_MIN_TIMEOUT = 2.0

Clock = Callable[[], float]
Probe = Callable[["Dependency", float], str]


class Inbox(Protocol):
    """What `wait_for` needs of entrypoint.runtime.signals.SignalInbox."""

    def wait(self, timeout: float | None) -> None: ...
    def notify(self) -> None: ...
    def take(self) -> list[int]: ...
    @property
    def stop_requested(self) -> bool: ...


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter between attempts: initial * 2^n + U(0, jitter),
    capped at `maximum`. Backoff(0, 0, 0) retries at once (tests).

    At most 2 s apart: the child starts within about 2 s of its dependency
    answering, at start as before a restart after a failure.
    """

    initial: float = 0.25
    maximum: float = 1.75
    jitter: float = 0.25

    def strategy(self) -> tenacity.wait.wait_base:
        return tenacity.wait_exponential_jitter(
            multiplier=self.initial, max=self.maximum, jitter=self.jitter
        )


def _default_probe(dep: Dependency, timeout: float) -> str:
    return probe(dep, timeout=timeout)


class _Cancelled(Exception):
    """The wait is over (stop signal, or another dependency failed for good)."""


@dataclass
class _Outcome:
    ok: bool
    detail: str
    permanent: bool = False


class _Quiet:
    """The logger of a wait that must not speak (the probe before a restart)."""

    def info(self, *_args: object, **_fields: object) -> None:
        pass

    error = info


class _Waiter:
    """One dependency's retry loop, run in its own daemon thread."""

    def __init__(
        self,
        dep: Dependency,
        *,
        timeout: float,
        probe_timeout: float,
        backoff: Backoff,
        inbox: Inbox,
        cancel: threading.Event,
        probe_fn: Probe,
        clock: Clock,
        quiet: bool = False,
    ) -> None:
        self.dep = dep
        self.timeout = max(timeout, 0.0)
        self.probe_timeout = probe_timeout
        self.backoff = backoff
        self.inbox = inbox
        self.cancel = cancel
        self.probe_fn = probe_fn
        self.clock = clock
        self.start = clock()
        self.deadline = self.start + self.timeout
        self.attempts = 0
        self.last_reason = "no attempt finished in time"
        self.last_logged: float | None = None
        self.outcome: _Outcome | None = None
        self.log: Any = (
            _Quiet()
            if quiet
            else get_logger().bind(dependency=dep.display, source=dep.source, depth=str(dep.depth))
        )

    def run(self) -> None:
        try:
            self._run()
        except Exception as exc:  # noqa: BLE001 - a bug must not leave the main thread waiting
            reason = redact_text(f"unexpected {type(exc).__name__}: {exc}", self.dep.secrets)
            self.outcome = _Outcome(ok=False, detail=reason)
        finally:
            self.inbox.notify()

    def _run(self) -> None:
        backoff = self.backoff.strategy()
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(
                lambda e: isinstance(e, ProbeError) and not e.permanent
            ),
            stop=self._should_stop,
            wait=lambda state: min(backoff(state), max(0.0, self._left() - MIN_ATTEMPT)),
            sleep=self._sleep,
            before_sleep=self._waiting,
            reraise=True,
        )
        # Log first, then publish the outcome: the main thread may end the wait
        # (and the process) as soon as it sees it.
        try:
            detail, latency = retrying(self._attempt)
        except ProbeError as exc:
            if not self.cancel.is_set():
                self.log.error(
                    "dependency_failed",
                    reason=exc.message,
                    permanent=exc.permanent,
                    attempts=self.attempts,
                    waited_s=round(self.clock() - self.start, 3),
                )
            self.outcome = _Outcome(ok=False, detail=exc.message, permanent=exc.permanent)
        except _Cancelled:
            self.outcome = _Outcome(ok=False, detail=self.last_reason)
        else:
            if not self.cancel.is_set():  # else the wait is over: nothing to report
                self.log.info(
                    "dependency_ready",
                    latency_ms=latency,
                    attempts=self.attempts,
                    waited_s=round(self.clock() - self.start, 3),
                    detail=detail,
                )
            self.outcome = _Outcome(ok=True, detail=detail)

    def _sleep(self, seconds: float) -> None:
        self.cancel.wait(seconds)  # a cancel ends the backoff at once

    def _left(self) -> float:
        return self.deadline - self.clock()

    def _should_stop(self, _state: tenacity.RetryCallState) -> bool:
        return self.cancel.is_set() or self._left() < MIN_ATTEMPT

    def _attempt(self) -> tuple[str, float]:
        if self.cancel.is_set():
            raise _Cancelled
        timeout = self.probe_timeout
        if self.timeout > 0:
            timeout = min(timeout, max(self._left(), MIN_ATTEMPT))
        self.attempts += 1
        began = self.clock()
        try:
            detail = self.probe_fn(self.dep, timeout)
        except ProbeError as exc:
            reason = redact_text(exc.message, self.dep.secrets)
            self.last_reason = reason
            raise ProbeError(reason, permanent=exc.permanent) from None
        return redact_text(detail, self.dep.secrets), round((self.clock() - began) * 1000, 1)

    def _waiting(self, _state: tenacity.RetryCallState) -> None:
        now = self.clock()
        if self.last_logged is not None and now - self.last_logged < LOG_EVERY:
            return
        self.last_logged = now
        self.log.info(
            "dependency_waiting",
            attempt=self.attempts,
            reason=self.last_reason,
            elapsed_s=round(now - self.start, 3),
            timeout_s=self.timeout,
        )


def wait_for(
    deps: Sequence[Dependency],
    *,
    timeout: float,
    probe_timeout: float,
    inbox: Inbox,
    backoff: Backoff | None = None,
    probe_fn: Probe = _default_probe,
    clock: Clock = time.monotonic,
    quiet: bool = False,
) -> bool:
    """Wait until every dependency is ready: True; False when a stop signal came first.

    Raises UnavailableError naming the dependency and the reason: at once on a
    permanent failure, else when `timeout` seconds have passed (0: one attempt each).
    """
    if not deps:
        return True
    cancel = threading.Event()
    waiters = [
        _Waiter(
            dep,
            timeout=timeout,
            probe_timeout=probe_timeout,
            backoff=backoff or Backoff(),
            inbox=inbox,
            cancel=cancel,
            probe_fn=probe_fn,
            clock=clock,
            quiet=quiet,
        )
        for dep in deps
    ]
    start = clock()
    hard_deadline = start + max(timeout, 0.0) + _grace(deps, probe_timeout)
    if timeout <= 0:
        hard_deadline += probe_timeout
    for waiter in waiters:
        thread = threading.Thread(target=waiter.run, name=f"wait {waiter.dep.display}")
        thread.daemon = True
        thread.start()
    try:
        while True:
            if inbox.stop_requested:
                return False
            permanent = [w for w in waiters if w.outcome and w.outcome.permanent]
            if permanent:
                raise _unavailable(permanent, timeout)
            if all(w.outcome is not None for w in waiters):
                failed = [w for w in waiters if w.outcome and not w.outcome.ok]
                if failed:
                    raise _unavailable(failed, timeout)
                return True
            left = hard_deadline - clock()
            if left <= 0:
                stuck = [w for w in waiters if w.outcome is None or not w.outcome.ok]
                for waiter in (w for w in stuck if w.outcome is None):  # the others logged
                    waiter.log.error(
                        "dependency_failed",
                        reason=waiter.last_reason,
                        permanent=False,
                        attempts=waiter.attempts,
                        waited_s=round(clock() - start, 3),
                    )
                raise _unavailable(stuck, timeout)
            inbox.wait(left)
            inbox.take()
    finally:
        cancel.set()


def _grace(deps: Sequence[Dependency], probe_timeout: float) -> float:
    grace = GRACE
    if any(d.scheme is Scheme.POSTGRESQL and d.depth is Depth.AUTHENTICATED for d in deps):
        grace += max(0.0, LIBPQ_MIN_TIMEOUT - probe_timeout)
    return grace


def _unavailable(waiters: Sequence[_Waiter], timeout: float) -> UnavailableError:
    parts = []
    for waiter in waiters:
        dep, outcome = waiter.dep, waiter.outcome
        reason = outcome.detail if outcome is not None else waiter.last_reason
        attempts = f"{waiter.attempts} attempt{'s' if waiter.attempts != 1 else ''}"
        if outcome is not None and outcome.permanent:
            how = "refused (permanent, not retried)"
        elif timeout > 0:
            how = f"still unavailable after {timeout:g} s ({attempts})"
        else:
            how = "unavailable (one attempt: ENTRYPOINT_WAIT_TIMEOUT=0)"
        parts.append(f"{dep.source} {dep.display} {how}: {reason}")
    secrets = [s for w in waiters for s in w.dep.secrets]
    return UnavailableError(redact_text("; ".join(parts), secrets))


# -- entrypoint check ---------------------------------------------------------------


@dataclass(frozen=True)
class CheckResult:
    """One dependency's answer to one attempt."""

    dependency: str  # the redacted URL
    source: str
    scheme: str
    depth: Depth
    ok: bool
    latency_ms: float
    detail: str  # the probe's detail when ok, the reason when not
    permanent: bool = False


def all_up(
    deps: Sequence[Dependency],
    *,
    probe_timeout: float,
    inbox: Inbox,
    probe_fn: Probe = _default_probe,
) -> bool:
    """One quiet attempt per dependency: whether every one answers now.

    A stop signal ends it at once (False: the caller sees the stop in `inbox`).
    """
    try:
        return wait_for(
            deps, timeout=0, probe_timeout=probe_timeout, inbox=inbox, probe_fn=probe_fn, quiet=True
        )
    except UnavailableError:
        return False


def check(
    deps: Sequence[Dependency],
    *,
    probe_timeout: float,
    probe_fn: Probe = _default_probe,
    clock: Clock = time.monotonic,
) -> list[CheckResult]:
    """One attempt per dependency, all at once; results in the order of `deps`."""
    results: list[CheckResult | None] = [None] * len(deps)

    def run(index: int, dep: Dependency) -> None:
        began = clock()
        try:
            detail = probe_fn(dep, probe_timeout)
        except ProbeError as exc:
            ok, text, permanent = False, exc.message, exc.permanent
        else:
            ok, text, permanent = True, detail, False
        latency = round((clock() - began) * 1000, 1)
        results[index] = _result(dep, ok=ok, latency_ms=latency, text=text, permanent=permanent)

    threads = [
        threading.Thread(target=run, args=(i, dep), name=f"check {dep.display}", daemon=True)
        for i, dep in enumerate(deps)
    ]
    for thread in threads:
        thread.start()
    deadline = clock() + probe_timeout + _grace(deps, probe_timeout)
    for thread in threads:
        thread.join(max(0.0, deadline - clock()))
    silent = f"no answer within {probe_timeout:g} s"
    return [
        result
        if result is not None
        else _result(dep, ok=False, latency_ms=probe_timeout * 1000, text=silent)
        for dep, result in zip(deps, results, strict=True)
    ]


def _result(
    dep: Dependency, *, ok: bool, latency_ms: float, text: str, permanent: bool = False
) -> CheckResult:
    return CheckResult(
        dependency=dep.display,
        source=dep.source,
        scheme=str(dep.scheme),
        depth=dep.depth,
        ok=ok,
        latency_ms=latency_ms,
        detail=redact_text(text, dep.secrets),
        permanent=permanent,
    )
