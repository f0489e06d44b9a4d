"""The one impure loop: start the child, forward signals, restart, stop, reap.

Everything waits in `SignalInbox.wait` with a timeout taken from the nearest
deadline (kill, restart, lease renewal); with no deadline it blocks until a
signal arrives. Decisions are delegated to `policy.decide`; the world (clock,
spawn, reap, signal delivery, randomness) comes in through the constructor.
"""

from __future__ import annotations

import os
import random
import signal
import time
from typing import TYPE_CHECKING, Any

from entrypoint.errors import UnavailableError
from entrypoint.plan.policy import Action, History, decide
from entrypoint.runtime import children, log
from entrypoint.runtime.signals import SignalInbox, signal_name
from entrypoint.runtime.state import State, process_start, write_state
from entrypoint.sigstate import STOP_SIGNALS

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from entrypoint.lease import Lease
    from entrypoint.plan.modes import Plan

# How often a standby replica tries to take the lease, at most: takeover after a
# leader dies is bounded by the lease TTL plus this.
STANDBY_RETRY_MAX = 1.0


class Stopped(Exception):
    """A stop signal arrived while no child was running."""


class Supervisor:
    """Runs `plan.argv` until a stop signal, restarting it by `plan.restart`."""

    def __init__(
        self,
        plan: Plan,
        *,
        inbox: SignalInbox,
        lease: Lease | None = None,
        clock: Callable[[], float] = time.monotonic,
        spawn: Callable[[Sequence[str]], int] = children.spawn,
        reap: Callable[[], Iterable[tuple[int, int]]] = children.reap,
        send: Callable[..., bool] = children.send,
        rand: Callable[[], float] = random.random,
        wait_for_dependencies: Callable[..., bool] | None = None,
        logger: Any = None,
    ) -> None:
        self.plan = plan
        self.inbox = inbox
        self.lease = lease
        self.clock = clock
        self._spawn = spawn
        self._reap = reap
        self._send = send
        self._rand = rand
        self._wait_for_dependencies = wait_for_dependencies
        self.log = logger if logger is not None else log.get_logger()
        self.history = History()
        self.restarts = 0
        self.last_exit: int | None = None
        self.child: int | None = None
        self.leader = False
        self.lease_valid_until = 0.0
        self._state_broken = False
        self._start_id = process_start(os.getpid())

    # -- the loop -----------------------------------------------------------

    def run(self) -> int:
        """Supervise until stopped or given up; return the exit status for the entrypoint."""
        try:
            return self._run()
        except Stopped:
            return self._finish_without_child()
        finally:
            if self.lease is not None:
                self._release_lease()
                self.lease.close()

    def _run(self) -> int:
        self._take_signals()
        wait = self._wait_for_dependencies if self.plan.wait and self.plan.dependencies else None
        self._write("starting", detail="waiting for dependencies" if wait else "")
        if wait is not None and not wait(
            self.plan.dependencies,
            timeout=self.plan.wait_timeout,
            probe_timeout=self.plan.probe_timeout,
            inbox=self.inbox,
        ):
            raise Stopped
        self._take_signals()
        while True:
            if self.lease is not None and not self.leader:
                self._standby()
            code, lost = self._run_child()
            if self.inbox.stop_requested:
                self._write("stopped")
                self.log.info("stop_finished", exit_code=code)
                return code
            if lost:
                continue
            decision = decide(
                self.plan.restart,
                self.history,
                exit_code=code,
                uptime=self._uptime,
                now=self.clock(),
                rand=self._rand(),
            )
            self.history = decision.history
            if decision.action is Action.GIVE_UP:
                self._write("stopped", detail=f"gave up: {decision.reason}")
                self.log.error("gave_up", exit_code=code, reason=decision.reason)
                return code
            self.restarts += 1
            self.log.info(
                "restart_scheduled",
                delay_s=round(decision.delay, 3),
                attempt=decision.attempt,
                reason=decision.reason,
                exit_code=code,
            )
            if decision.delay > 0:
                self._write("backoff", detail=f"restart in {decision.delay:.1f} s")
                self._sleep(decision.delay)

    def _run_child(self) -> tuple[int, bool]:
        """Start the child and wait for its end: (exit code, whether leadership was lost)."""
        self._take_signals()
        if self.inbox.stop_requested:
            raise Stopped
        pid = self._spawn(self.plan.argv)
        self.child = pid
        self._started = self.clock()
        log.bind(child_pid=pid)
        self.log.info("child_started", pid=pid, argv=list(self.plan.argv))
        self._write("running")
        kill_at: float | None = None  # set once a stop (signal or lost lease) is under way
        stop_signalled = lost = False
        while True:
            code = self._reap_child(pid)
            if code is not None:
                break
            now = self.clock()
            if kill_at is not None and now >= kill_at:
                self._escalate(pid)
                kill_at = float("inf")
            if self.leader and not self._renew(now):
                lost = True
                lost_kill_at = self._stop_for_lost_lease(pid, now)
                kill_at = lost_kill_at if kill_at is None else min(kill_at, lost_kill_at)
            self.inbox.wait(self._timeout(now, kill_at))
            for signum in self._take_signals():
                if signum in STOP_SIGNALS and not stop_signalled:
                    stop_signalled = True
                    stop_at = self._begin_stop(pid, signum)
                    kill_at = stop_at if kill_at is None else min(kill_at, stop_at)
                else:
                    self._forward(pid, signum)  # a second stop signal too: "stop now"
        uptime = self.clock() - self._started
        self._uptime = uptime
        self.child = None
        self.last_exit = code
        log.unbind("child_pid")
        self.log.info("child_exited", pid=pid, exit_code=code, uptime_s=round(uptime, 3))
        return code, lost

    # -- stop ---------------------------------------------------------------

    def _begin_stop(self, pid: int, signum: int) -> float:
        """Forward the (translated) stop signal; return the moment of SIGKILL."""
        self._write("stopping")
        self.log.info(
            "stop_started",
            signal=signal_name(signum),
            sent=signal_name(self.plan.stop.signal or signum),
            timeout_s=self.plan.stop.timeout,
        )
        self._forward(pid, signum)
        return self.clock() + self.plan.stop.timeout

    def _forward(self, pid: int, signum: int) -> None:
        if signum in STOP_SIGNALS and self.plan.stop.signal is not None:
            signum = self.plan.stop.signal
        if self._send(pid, signum, group=self.plan.stop.group):
            self.log.info("signal_forwarded", signal=signal_name(signum), pid=pid)

    def _escalate(self, pid: int) -> None:
        """SIGKILL to the child's whole process group: nothing of it may outlive the stop."""
        self._send(pid, signal.SIGKILL, group=True)
        self.log.warning(
            "stop_escalated", signal="SIGKILL", pid=pid, timeout_s=self.plan.stop.timeout
        )

    def _finish_without_child(self) -> int:
        stop = self.inbox.stop_signal or signal.SIGTERM
        code = self.last_exit if self.last_exit is not None else 128 + stop
        self._write("stopped")
        self.log.info("stop_finished", exit_code=code, child_running=False)
        return code

    # -- waiting ------------------------------------------------------------

    def _take_signals(self) -> list[int]:
        """Signals received since the last call; reaps orphans on every wakeup."""
        taken = [s for s in self.inbox.take() if s != signal.SIGCHLD]
        if self.child is None:
            for _orphan in self._reap():
                pass
        return taken

    def _reap_child(self, pid: int) -> int | None:
        code = None
        for reaped, status in self._reap():
            if reaped == pid:
                code = status
        return code

    def _timeout(self, now: float, *deadlines: float | None) -> float | None:
        pending = [d for d in deadlines if d is not None and d != float("inf")]
        if self.leader:
            pending.append(self._next_lease_check)
        if not pending:
            return None
        return max(0.0, min(pending) - now)

    def _sleep(self, seconds: float) -> None:
        """Sleep `seconds`, reaping orphans and keeping the lease; raise Stopped on a stop.

        A leader that loses its lease while it sleeps (in backoff) wakes at once,
        to go back to standby rather than start a child it may no longer run.
        """
        until = self.clock() + seconds
        while True:
            self._take_signals()
            if self.inbox.stop_requested:
                raise Stopped
            now = self.clock()
            if now >= until or (self.leader and not self._renew(now)):
                return
            self.inbox.wait(self._timeout(now, until))

    # -- leader lease -------------------------------------------------------

    _next_lease_check = 0.0
    _last_renewed = 0.0
    _started = 0.0
    _uptime = 0.0

    def _standby(self) -> None:
        """Wait for the lease; raise Stopped on a stop signal."""
        from entrypoint.lease import LeaseUnavailable

        assert self.lease is not None
        announced = False
        while True:
            self._take_signals()
            if self.inbox.stop_requested:
                raise Stopped
            started = self.clock()
            try:
                acquired = self.lease.acquire()
                error = None
            except LeaseUnavailable as exc:
                if getattr(exc, "permanent", False):
                    raise UnavailableError(f"leader lease at {self._lease_where}: {exc}") from None
                acquired, error = False, str(exc)
            if acquired:
                self.leader = True
                self._last_renewed = started
                self.lease_valid_until = started + self.lease.ttl
                self._next_lease_check = started + self.lease.ttl / 3
                self.log.info("leader_acquired", key=self._lease_key, ttl_s=self.lease.ttl)
                return
            if not announced:
                self._write("standby", detail="another replica holds the lease")
                self.log.info("leader_standby", key=self._lease_key, reason=error or "held")
                announced = True
            retry = min(STANDBY_RETRY_MAX, self.lease.ttl / 3) * (0.5 + 0.5 * self._rand())
            self._sleep(retry)

    @property
    def _lease_where(self) -> str:
        return str(getattr(self.lease, "where", "")) or self._lease_key

    @property
    def _lease_key(self) -> str:
        return self.plan.lease.key if self.plan.lease else ""

    def _renew(self, now: float) -> bool:
        """Renew the lease when due (child running or not); False once leadership is lost."""
        from entrypoint.lease import LeaseUnavailable

        assert self.lease is not None
        if now < self._next_lease_check:
            return True
        ttl = self.lease.ttl
        try:
            held: bool | None = self.lease.renew()
            error = None
        except LeaseUnavailable as exc:
            held, error = None, str(exc)
        if held:
            self._last_renewed = now
            self.lease_valid_until = now + ttl
            self._next_lease_check = now + ttl / 3
            return True
        if held is None and now < self._last_renewed + ttl - ttl / 3:
            # Unreachable for now: retry soon, while there is time left.
            self._next_lease_check = now + min(1.0, ttl / 6)
            self.log.warning("leader_renew_failed", key=self._lease_key, reason=error)
            return True
        self.leader = False
        self._next_lease_check = float("inf")
        reason = error if held is None else "the lease is held by another replica"
        self.log.warning("leader_lost", key=self._lease_key, reason=reason)
        return False

    def _stop_for_lost_lease(self, pid: int, now: float) -> float:
        """Stop the child at once; SIGKILL no later than just before the lease expires."""
        assert self.lease is not None
        self._write("stopping", detail="leadership lost")
        self._forward(pid, signal.SIGTERM)  # translated to ENTRYPOINT_STOP_SIGNAL
        margin = min(1.0, self.lease.ttl / 10)
        return min(now + self.plan.stop.timeout, max(now, self.lease_valid_until - margin))

    def _release_lease(self) -> None:
        if self.lease is not None and self.leader:
            self.lease.release()
            self.leader = False
            self.log.info("leader_released", key=self._lease_key)

    # -- state file ---------------------------------------------------------

    def _write(self, state: str, *, detail: str = "") -> None:
        if self._state_broken:
            return
        try:
            write_state(
                self.plan.state_file,
                State(
                    mode=self.plan.mode,
                    state=state,
                    supervisor_pid=os.getpid(),
                    supervisor_start=self._start_id,
                    child_pid=self.child,
                    restarts=self.restarts,
                    last_exit=self.last_exit,
                    leader=self.leader if self.lease is not None else None,
                    since=time.time(),
                    detail=detail,
                ),
            )
        except OSError as exc:
            self._state_broken = True
            self.log.warning("state_file_unwritable", path=self.plan.state_file, error=str(exc))
