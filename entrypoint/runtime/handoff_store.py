"""`entrypoint handoff --store -- CMD...`: the replicas yield to CMD through the queue's store.

    hold the handoff lease              # held: one line naming the holder, 75 (or --wait)
    wait for every replica to yield     # bounded: 2 x TTL + their longest stop timeout
    CMD...                              # foreground, signals forwarded, as `handoff`
    release the lease                   # on any end of CMD, an error, TERM

The lease is renewed every ttl/6 from the moment it is held to its release,
while waiting for the replicas and while CMD runs. A renewal that finds the
lease gone (the machine slept past its expiry) takes it again when it is
free: the replicas, which resumed meanwhile, yield again at their next check.
A handoff killed with SIGKILL releases nothing: its lease expires by itself,
and the replicas resume within the TTL (`entrypoint.lease.handoff`).

Signals are held from the start (`HeldSignals`): a stop signal (TERM, INT,
QUIT, HUP) before CMD starts ends the handoff at once with 128+n, without
starting CMD; once CMD runs, signals are forwarded as `entrypoint handoff`
forwards them (Ctrl+C reaches CMD once, from the terminal).
"""

from __future__ import annotations

import datetime
import os
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from entrypoint.errors import (
    EntrypointError,
    ExitCode,
    UnavailableError,
    UsageError,
    signal_status,
)
from entrypoint.lease import LeaseUnavailable, open_handoff_store
from entrypoint.lease.handoff import HolderInfo, renew_every, shown
from entrypoint.runtime.handoff import HeldSignals, run_foreground, take_early_stop, wait_signal
from entrypoint.sigstate import STOP_SIGNALS, signal_name

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from entrypoint.lease.handoff import HandoffStore, ReplicaInfo
    from entrypoint.plan.urls import Dependency

# How often a waiting handoff tries the lease, and reads the replicas' states.
HOLD_RETRY = 0.5
YIELD_POLL = 0.25
# How many times in a row the lease may vanish between a refused hold and the
# holder's lookup before that counts as held (a holder that flaps that fast).
_RACES = 3


def store_timeout(ttl: float) -> float:
    """The bound on each call to the store: the leader lease's, min(2 s, ttl/5)."""
    return min(2.0, ttl / 5)


def yield_budget(ttl: float, stop_timeouts: Iterable[float] = ()) -> float:
    """How long the handoff waits for the replicas to yield, in seconds.

    Each replica notices the handoff within ttl/3, then stops its child within
    its own stop timeout (they stop in parallel): 2 x ttl plus the longest
    stop timeout a replica published leaves room for a missed check or two.
    """
    return 2 * ttl + max((t for t in stop_timeouts if t > 0), default=0.0)


def run_store_handoff(
    argv: Sequence[str],
    *,
    store: Dependency,
    key: str,
    ttl: float,
    wait: bool,
    log: Any,
    open_store: Callable[..., HandoffStore] = open_handoff_store,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Hold the handoff lease `key` in `store`, wait for the replicas, run `argv`; its status.

    Returns argv's exit status (128+n when signal n ended it, 127/126 when it
    cannot start), or 128+n when stop signal n came before argv started.
    Raises (each an EntrypointError, message redacted, one line):
    UsageError (64) without a command; ConfigError (78) for a store the lease
    cannot use; EntrypointError with 75 when another handoff holds the lease
    and `wait` is False (naming its host, pid and since); UnavailableError
    (69) when the store cannot be asked, or the replicas did not yield within
    `yield_budget` (argv is then not started). The lease is released on every
    way out once held.
    """
    if not argv:
        raise UsageError("handoff needs a command: entrypoint handoff --store -- CMD...")
    handoff = open_store(store, key, ttl, timeout=store_timeout(ttl))
    info = HolderInfo(
        host=socket.gethostname(),
        pid=os.getpid(),
        since=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    )
    try:
        with HeldSignals() as held:
            stop = take_early_stop()
            if stop is not None:
                return signal_status(stop)
            stop = _take(handoff, info, held, wait=wait, log=log)
            if stop is not None:
                return signal_status(stop)
            keeper = _Keeper(handoff, info, ttl, log, due=clock() + renew_every(ttl))
            try:
                stop = _await_yield(handoff, keeper, held, argv[0], log=log, clock=clock)
                if stop is not None:
                    return signal_status(stop)
                log.info("handoff_started", command=argv[0])
                return run_foreground(list(argv), held, log, tick=keeper.tick, clock=clock)
            finally:
                handoff.release()
                log.info("handoff_released", key=key)
    finally:
        handoff.close()


def _take(
    handoff: HandoffStore, info: HolderInfo, held: frozenset[int], *, wait: bool, log: Any
) -> int | None:
    """Hold the lease (None), or return the stop signal that came first while waiting for it."""
    waiting_for: HolderInfo | None = None
    races = 0
    while True:
        try:
            if handoff.hold(info):
                log.info("handoff_held", key=handoff.key, store=handoff.where, ttl_s=handoff.ttl)
                return None
            current = handoff.holder()
        except LeaseUnavailable as exc:
            raise UnavailableError(f"handoff: the store cannot be asked: {exc}") from None
        if current is None and races < _RACES:
            races += 1  # released between the two calls: try again at once
            continue
        races = 0
        holder = current.describe() if current is not None else "another handoff"
        if not wait:
            raise EntrypointError(
                f"handoff: {shown(handoff.key)} in {handoff.where} is held by {holder}: "
                "run with --wait to wait for it",
                exit_code=ExitCode.TEMPFAIL,
            )
        if current != waiting_for:
            log.info("handoff_waiting", key=handoff.key, holder=holder)
            waiting_for = current
        got = wait_signal(held, HOLD_RETRY)
        if got is not None and got[0] in STOP_SIGNALS:
            log.info("handoff_cancelled", signal=signal_name(got[0]))
            return got[0]


@dataclass
class _Keeper:
    """Keeps the held lease: a renewal every ttl/6, retried sooner when the store fails."""

    handoff: HandoffStore
    info: HolderInfo
    ttl: float
    log: Any
    due: float

    def tick(self, now: float) -> float:
        """Renew when due; return when to come back."""
        if now < self.due:
            return self.due
        try:
            kept = self.handoff.renew() or self.handoff.hold(self.info)
        except LeaseUnavailable as exc:
            self.log.warning("handoff_renew_failed", key=self.handoff.key, reason=str(exc))
            self.due = now + min(1.0, renew_every(self.ttl) / 2)
            return self.due
        if not kept:
            self.log.warning(
                "handoff_lease_lost",
                key=self.handoff.key,
                reason="the handoff lease expired and another handoff holds it",
            )
        self.due = now + renew_every(self.ttl)
        return self.due


def _await_yield(
    handoff: HandoffStore,
    keeper: _Keeper,
    held: frozenset[int],
    command: str,
    *,
    log: Any,
    clock: Callable[[], float],
) -> int | None:
    """Wait until every live replica yielded (None), or return the stop signal that came first."""
    started = clock()
    stop_timeouts: set[float] = set()
    pending: list[ReplicaInfo] = []
    error: str | None = None
    announced: tuple[str, ...] | None = None
    while True:
        now = clock()
        keeper.tick(now)
        try:
            replicas = handoff.replicas()
        except LeaseUnavailable as exc:
            error = str(exc)
            log.warning("handoff_store_unavailable", reason=error)
        else:
            error = None
            stop_timeouts.update(r.stop_timeout for r in replicas)
            pending = [r for r in replicas if not r.yielded]
            if not pending:
                log.info(
                    "handoff_replicas_yielded",
                    replicas=len(replicas),
                    waited_s=round(clock() - started, 3),
                )
                return None
            ids = tuple(r.replica_id for r in pending)
            if ids != announced:
                log.info("handoff_waiting_for_replicas", replicas=[shown(i) for i in ids])
                announced = ids
        budget = yield_budget(handoff.ttl, stop_timeouts)
        left = started + budget - clock()
        if left <= 0:
            raise UnavailableError(_not_yielded(pending, budget, command, error))
        got = wait_signal(held, max(0.0, min(YIELD_POLL, left, keeper.due - clock())))
        if got is not None and got[0] in STOP_SIGNALS:
            log.info("handoff_cancelled", signal=signal_name(got[0]))
            return got[0]


def _not_yielded(pending: list[ReplicaInfo], budget: float, command: str, error: str | None) -> str:
    if error is not None:
        why = f"the store did not answer: {error}"
    else:
        names = ", ".join(f"{shown(r.replica_id)} ({r.state})" for r in pending[:5])
        more = f" and {len(pending) - 5} more" if len(pending) > 5 else ""
        count = f"{len(pending)} replica{'s' if len(pending) != 1 else ''}"
        why = f"{count} did not yield: {names}{more}"
    return f"handoff: {why}, within {budget:g} s; {shown(command)} was not started"
