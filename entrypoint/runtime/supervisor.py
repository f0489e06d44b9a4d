"""The one impure loop: start the child, forward signals, restart, stop, reap.

Everything waits in `SignalInbox.wait` (the Loop) with a timeout taken from the
nearest deadline (kill, restart, lease renewal, a watch's own); with no
deadline it blocks until something arrives. Decisions are pure functions of
`plan.policy`; the world (clock, spawn, reap, signal delivery, randomness, the
dependency wait) comes in through the constructor, so that a scripted history
can drive the loop in a unit test (tests/test_supervisor_scripted.py).
"""

from __future__ import annotations

import os
import random
import signal
import time
from typing import TYPE_CHECKING, Any

from entrypoint.errors import UnavailableError, signal_status
from entrypoint.lease import lease_clock
from entrypoint.plan.leasing import leader_acts_until, leader_may_act
from entrypoint.plan.policy import Action, Cause, History, Reason, decide, exit_reason
from entrypoint.runtime import children, log, procs
from entrypoint.runtime.signals import coalesce
from entrypoint.runtime.state import State, States, StateStore, process_start
from entrypoint.sigstate import STOP_SIGNALS, signal_name

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

    from entrypoint.lease import Lease
    from entrypoint.lease.handoff import HandoffStore
    from entrypoint.plan.modes import SupervisePlan
    from entrypoint.runtime.signals import SignalInbox
    from entrypoint.runtime.watch import Watch

# How often a standby replica tries to take the lease, at most: takeover after a
# leader dies is bounded by the lease TTL plus this.
STANDBY_RETRY_MAX = 1.0
# After the SIGKILL of a stop, how long the group and the descendants may take
# to be gone; a process in uninterruptible sleep is reported, not waited for.
KILL_SETTLE = 5.0
# Descendants get at least this much of the grace after the child is gone.
DESCENDANT_GRACE_MIN = 1.0


class Stopped(Exception):
    """A stop signal arrived while no child was running."""


class Exit:
    """How the child ended."""

    def __init__(self, pid: int, code: int, uptime: float, cause: Cause | None) -> None:
        self.pid = pid
        self.code = code
        self.uptime = uptime
        self.cause = cause


class Supervisor:
    """Runs `plan.argv` until a stop signal, restarting it by `plan.restart`."""

    def __init__(
        self,
        plan: SupervisePlan,
        *,
        inbox: SignalInbox,
        lease: Lease | None = None,
        handoff: HandoffStore | None = None,
        replica_id: str = "",
        watches: Sequence[Watch] = (),
        clock: Callable[[], float] = lease_clock,
        wall: Callable[[], float] = time.time,
        spawn: Callable[..., int] = children.spawn,
        reap: Callable[[], Iterable[tuple[int, int]]] = children.reap,
        send: Callable[..., bool] = children.send,
        rand: Callable[[], float] = random.random,
        wait_for_dependencies: Callable[..., bool] | None = None,
        probe_dependencies: Callable[..., bool] | None = None,
        oom_kills: Callable[[], int | None] = lambda: None,
        descendants: Callable[[int, tuple[int, ...]], list[int]] = procs.reparented_to,
        group_alive: Callable[[int], bool] = children.group_alive,
        store: StateStore | None = None,
        logger: Any = None,
    ) -> None:
        self.plan = plan
        self.inbox = inbox
        self.lease = lease
        self.handoff = handoff
        self.replica_id = replica_id
        self.watches = tuple(watches)
        self.clock = clock
        self.wall = wall
        self._spawn = spawn
        self._reap = reap
        self._send = send
        self._rand = rand
        self._wait_for_dependencies = wait_for_dependencies
        self._probe_dependencies = probe_dependencies
        self._oom_kills = oom_kills
        self._descendants = descendants
        self._group_alive = group_alive
        self.log = logger if logger is not None else log.get_logger()
        self.store = store or StateStore(plan.state_file, warn=self.log.warning)
        self.history = History()
        self.restarts = 0
        self.starts = 0
        self.exits: dict[str, int] = {}  # by reason, for the metrics
        self.pending_delay = 0.0  # the restart backoff now being slept
        self.last_exit: Exit | None = None
        self.last_reason: Reason | None = None
        self.child: int | None = None
        self.child_started_at = 0.0  # monotonic
        self.child_started_wall: float | None = None
        self.stop_sent_at: float | None = None  # when the stop signal of this child went out
        self.leader = False
        self.dependencies_ok: bool | None = None
        self.backoff_until: float | None = None
        self._state = States.STARTING
        self._state_since = wall()
        self._detail = ""
        self._stop_reason: str | None = None
        self._restart_at: float | None = None
        self._next_lease_check = 0.0
        self._last_renewed = 0.0
        self._next_acquire = 0.0  # the leader's flag: when a follower next tries the lease
        self._next_handoff_check = 0.0
        self._pid = os.getpid()
        self._start_id = process_start(self._pid)

    # -- the loop -----------------------------------------------------------

    def run(self) -> int:
        """Supervise until stopped, done or given up; return the entrypoint's exit status."""
        try:
            return self._run()
        except Stopped:
            return self._finish_without_child()
        finally:
            self._release_lease()
            if self.lease is not None:
                self.lease.close()
            for watch in self.watches:
                watch.close()

    def _run(self) -> int:
        self._take_signals()
        self._publish(States.STARTING)
        if self.plan.wait and self.plan.dependencies:
            self._wait_dependencies()
        handed_off = False
        while True:
            if self.handoff is not None and (handed_off or self._handoff_asked(self.clock())):
                self._yield_while_handed_off()
            handed_off = False
            if self.lease is not None and not self.leader:
                if self.plan.leader_env:
                    self._try_lead(self.clock())  # every replica runs; this says which value
                else:
                    self._standby()
            elif self.leader and not self._renew(self.clock()) and not self.plan.leader_env:
                # Frozen between taking the lease and this start (or since the last
                # child): the lease may be another replica's by now. Checked before
                # the spawn, so no child starts on a lease already lost: back to
                # standby (with the leader's flag, the child starts with false).
                continue
            ended = self._run_child()
            if self.inbox.stop_requested:
                return self._finish(ended.code)
            if ended.cause is Cause.LEADERSHIP and not self.leader and not self.plan.leader_env:
                continue  # back to standby; nothing failed
            if ended.cause is Cause.HANDOFF:
                handed_off = True
                continue  # yields before the next start; nothing failed
            decision = decide(
                self.plan.restart,
                self.history,
                exit_code=ended.code,
                uptime=ended.uptime,
                now=self.clock(),
                rand=self._rand(),
                cause=ended.cause,
            )
            self.history = decision.history
            if decision.action is Action.EXIT:
                self._publish(States.STOPPED, detail=decision.reason)
                self.log.info("stop_finished", exit_code=ended.code, reason=decision.reason)
                return ended.code
            if decision.action is Action.GIVE_UP:
                self._publish(States.STOPPED, detail=f"gave up: {decision.reason}")
                self.log.error("gave_up", exit_code=ended.code, reason=decision.reason)
                return ended.code
            self.restarts += 1
            self.log.info(
                "restart_scheduled",
                delay_s=round(decision.delay, 3),
                attempt=decision.attempt,
                reason=decision.reason,
                exit_code=ended.code,
            )
            if decision.probe_first and self.plan.dependencies and self._deps_down():
                continue  # waited for them: the wait was the backoff
            if decision.delay > 0:
                self._sleep(decision.delay)

    def _run_child(self) -> Exit:
        """Start the child and wait for its end."""
        self._take_signals()
        if self.inbox.stop_requested:
            raise Stopped
        oom_before = self._oom_kills()
        liveness = self.plan.liveness
        own_pid = "WATCHDOG_PID" if liveness.notify and liveness.watchdog_timeout else None
        pid = self._spawn(self.plan.argv, env=self._child_env(), own_pid=own_pid)
        now = self.clock()
        self.child, self.child_started_at, self.child_started_wall = pid, now, self.wall()
        self.starts += 1
        for watch in self.watches:
            watch.child_started(pid, now)
        log.bind(child_pid=pid)
        self.log.info("child_started", pid=pid, argv=list(self.plan.argv))
        self._publish(States.RUNNING)
        kill_at: float | None = None  # set once a stop of the child is under way
        self.stop_sent_at = None
        cause: Cause | None = None
        code = None
        while code is None:
            code = self._reap_child(pid)
            if code is not None:
                break
            now = self.clock()
            if kill_at is not None and kill_at != float("inf"):
                kill_at = self._extended(kill_at)
            if kill_at is not None and now >= kill_at:
                self._escalate(pid)
                kill_at = float("inf")
            if self.leader and not self._renew(now):
                at = self._stop_child(pid, Cause.LEADERSHIP, now, self._lease_deadline(now))
                if self.plan.leader_env and cause is None:
                    self._flag_changes(to=False)
                cause, kill_at = cause or Cause.LEADERSHIP, _earliest(kill_at, at)
            if cause is None and self.plan.leader_env and not self.leader and self._try_lead(now):
                self._flag_changes(to=True)
                cause, kill_at = Cause.LEADERSHIP, self._stop_child(pid, Cause.LEADERSHIP, now)
            if cause is None and self.handoff is not None and self._handoff_asked(now):
                self.log.info("handoff_yielded", pid=pid)
                cause, kill_at = Cause.HANDOFF, self._stop_child(pid, Cause.HANDOFF, now)
            if cause is None:
                for watch in self.watches:
                    request = watch.check(now)
                    if request is not None:
                        self.log.warning(request.event, **request.fields)
                        cause = request.cause
                        kill_at = self._stop_child(pid, cause, now)
                        break
            self.inbox.wait(
                self._timeout(now, kill_at, *self._periodic(), *(w.due() for w in self.watches))
            )
            for signum in coalesce(self._take_signals()):
                if signum in STOP_SIGNALS and cause is not Cause.STOP:
                    # A stop of ours under way (memory, watchdog, lease) already sent the
                    # stop signal: a second one would be RQ's or Celery's "stop now".
                    at = self._begin_stop(pid, signum, forward=cause is None)
                    cause, kill_at = Cause.STOP, _earliest(kill_at, at)
                else:
                    self._forward(pid, signum)  # a second stop signal too: "stop now"
        uptime = self.clock() - self.child_started_at
        signalled = code > 128 and code - 128 < signal.NSIG
        oom = signalled and _grew(oom_before, self._oom_kills())
        reason = exit_reason(code, cause, signalled=signalled, oom_killed=oom)
        self.child, self.child_started_wall = None, None
        for watch in self.watches:
            watch.child_exited()
        self.last_exit, self.last_reason = Exit(pid, code, uptime, cause), reason
        self.exits[str(reason)] = self.exits.get(str(reason), 0) + 1
        log.unbind("child_pid")
        self.log.info(
            "child_exited", pid=pid, exit_code=code, uptime_s=round(uptime, 3), reason=str(reason)
        )
        if cause is not None:
            self._settle(pid, kill_at)
        return self.last_exit

    def _child_env(self) -> Mapping[str, str] | None:
        """The child's environment, or None for the entrypoint's own, unchanged."""
        env: Mapping[str, str] = os.environ
        for watch in self.watches:
            env = watch.child_env(env)
        extra: dict[str, str] = {}
        token = getattr(self.lease, "token", None)
        if self.plan.leader_env:
            extra[self.plan.leader_env] = "true" if self.leader else "false"
        if self.leader and token is not None:
            extra["ENTRYPOINT_LEASE_TOKEN"] = str(token)
        if extra:
            env = {**env, **extra}
        return None if env is os.environ else env

    # -- stop ---------------------------------------------------------------

    def _begin_stop(self, pid: int, signum: int, *, forward: bool = True) -> float:
        """Forward the (translated) stop signal; return the moment of SIGKILL."""
        self._publish(States.STOPPING, stop_reason="stop")
        self.log.info(
            "stop_started",
            signal=signal_name(signum),
            sent=signal_name(self.plan.stop.signal or signum),
            timeout_s=self.plan.stop.timeout,
        )
        if forward:
            self._forward(pid, signum)
        now = self.clock()
        self.stop_sent_at = self.stop_sent_at or now
        return now + self.plan.stop.timeout

    def _stop_child(self, pid: int, cause: Cause, now: float, latest: float | None = None) -> float:
        """Stop the child as a stop does, for `cause`; return the moment of SIGKILL."""
        self._forward(pid, signal.SIGTERM)  # translated to ENTRYPOINT_STOP_SIGNAL
        self.stop_sent_at = self.stop_sent_at or self.clock()
        self._publish(States.STOPPING, stop_reason=str(cause))  # after: the signal first
        at = now + self.plan.stop.timeout
        return min(at, latest) if latest is not None else at

    def _extended(self, kill_at: float) -> float:
        """The kill deadline, moved when the child asked for more (EXTEND_TIMEOUT_USEC)."""
        since = self.stop_sent_at if self.stop_sent_at is not None else self.clock()
        for watch in self.watches:
            asked = watch.stop_extension(since)
            if asked is not None and asked > kill_at:
                self.log.info("stop_extended", timeout_s=round(asked - self.clock(), 3))
                kill_at = asked
        return kill_at

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

    def _settle(self, pid: int, kill_at: float | None) -> None:
        """After the child of a stop: its group gone, and every descendant it left behind.

        A process that left the child's group (a double fork, setsid) was
        re-parented to the entrypoint: it gets the stop signal (and SIGCONT when
        stopped, or the signal waits), then SIGKILL once what is left of the
        grace has passed, at least DESCENDANT_GRACE_MIN (the s6 stage-3 way).
        As PID 1 the kernel would SIGKILL them anyway, without any grace. Each
        exit of one of them wakes the loop (SIGCHLD: they are our children now);
        one in uninterruptible sleep is reported, not waited for forever.
        """
        now = self.clock()
        deadline = now if kill_at in (None, float("inf")) else max(kill_at, now)
        deadline = max(deadline, now + DESCENDANT_GRACE_MIN)
        stop = self.plan.stop.signal or self.inbox.stop_signal or signal.SIGTERM
        signalled: set[int] = set()
        killed = False
        settle_until = deadline + KILL_SETTLE
        while True:
            for _ in self._reap():
                pass
            left = self._descendants(self._pid, (pid,))
            fresh = [other for other in left if other not in signalled]
            for other in fresh:
                self._send(other, stop, group=False)
                self._send(other, signal.SIGCONT, group=False)
                signalled.add(other)
            if fresh and not killed:
                self.log.info("descendants_stopping", count=len(fresh), signal=signal_name(stop))
            group = self._group_alive(pid)
            if not left and not group:
                # Those that died since the reap above are zombies, left out of `left`: reap
                # them too, or they outlive the entrypoint as zombies of whoever adopts them.
                for _ in self._reap():
                    pass
                return
            now = self.clock()
            if now >= deadline and not killed:
                for other in left:
                    self._send(other, signal.SIGKILL, group=False)
                self._send(pid, signal.SIGKILL, group=True)
                self.log.warning("descendants_killed", count=len(left), signal="SIGKILL")
                killed = True
            if now >= settle_until:
                stuck = procs.states_of(left)
                self.log.warning(
                    "descendants_left",
                    pids=left[:20],
                    uninterruptible=[
                        p for p, st in stuck.items() if st is procs.State.UNINTERRUPTIBLE
                    ],
                    group_alive=group,
                )
                return
            until = deadline if not killed else settle_until
            # Group members that are not our children die without a SIGCHLD to us.
            self.inbox.wait(min(0.1, max(0.0, until - now)))
            self._take_signals()

    def _finish(self, code: int) -> int:
        self._release_lease()
        self._publish(States.STOPPED)
        self.log.info("stop_finished", exit_code=code)
        return code

    def _finish_without_child(self) -> int:
        stop = self.inbox.stop_signal or signal.SIGTERM
        code = self.last_exit.code if self.last_exit is not None else signal_status(stop)
        self._release_lease()
        self._publish(States.STOPPED)
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
        if self.leader and self.lease is not None:
            pending.append(self._next_lease_check)
            pending.append(leader_acts_until(self._last_renewed, self.lease.ttl))
        if not pending:
            return None
        return max(0.0, min(pending) - now)

    def _sleep(self, seconds: float) -> None:
        """Sleep in backoff, reaping orphans and keeping the lease; raise Stopped on a stop.

        A leader that loses its lease while it sleeps wakes at once, to go back
        to standby rather than start a child it may no longer run.
        """
        until = self.clock() + seconds
        self._publish(States.BACKOFF, restart_at=self.wall() + seconds)
        self.pending_delay = seconds
        try:
            while True:
                self._take_signals()
                if self.inbox.stop_requested:
                    raise Stopped
                now = self.clock()
                if now >= until or (self.leader and not self._renew(now)):
                    return
                self.inbox.wait(self._timeout(now, until))
        finally:
            self.pending_delay = 0.0

    def _wait_dependencies(self) -> None:
        """Wait until every dependency answers; raise Stopped on a stop, Unavailable at the end."""
        wait = self._wait_for_dependencies
        if wait is None:
            return
        self._publish(States.WAITING, detail="waiting for dependencies")
        self.dependencies_ok = False
        ready = wait(
            self.plan.dependencies,
            timeout=self.plan.wait_timeout,
            probe_timeout=self.plan.probe_timeout,
            inbox=self.inbox,
        )
        self._take_signals()
        if not ready or self.inbox.stop_requested:
            raise Stopped
        self.dependencies_ok = True

    def _deps_down(self) -> bool:
        """Before a restart after a failure: True when a dependency was down (and is back)."""
        probe = self._probe_dependencies
        if probe is None:
            return False
        # A probe of a hung server takes up to the probe timeout: that is waiting
        # for it too (health 0), not a child that is gone.
        self._publish(States.WAITING, detail="probing dependencies before the restart")
        if probe(self.plan.dependencies, probe_timeout=self.plan.probe_timeout, inbox=self.inbox):
            self.dependencies_ok = True
            return False
        self._take_signals()
        if self.inbox.stop_requested:
            raise Stopped
        self._wait_dependencies()
        return True

    # -- leader lease -------------------------------------------------------

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
                acquired = self._acquire(started)
                error = None
            except LeaseUnavailable as exc:
                acquired, error = False, str(exc)
            if acquired:
                return
            if not announced:
                self._publish(States.STANDBY, detail="another replica holds the lease")
                self.log.info("leader_standby", key=self._lease_key, reason=error or "held")
                announced = True
            self._sleep_until(self.clock() + self._retry_delay())

    def _sleep_until(self, until: float) -> None:
        """Wait until `until`, taking signals; raise Stopped on a stop."""
        while self.clock() < until:
            self._take_signals()
            if self.inbox.stop_requested:
                raise Stopped
            self.inbox.wait(max(0.0, until - self.clock()))

    def _retry_delay(self) -> float:
        """When a replica without the lease tries again: jittered, at most 1 s, TTL/3."""
        assert self.lease is not None
        return min(STANDBY_RETRY_MAX, self.lease.ttl / 3) * (0.5 + 0.5 * self._rand())

    def _acquire(self, now: float) -> bool:
        """One attempt at the lease, always as a new tenure with a new token.

        After `leader_lost` by the clock (frozen, or the store away past the
        guard but short of the TTL) the lease may still be this replica's in
        the store, and taking it again would keep the old token. The child
        stopped for that loss may still have a write in flight under that
        token: the next child must carry a greater one, so the stale tenure
        is given up and the lease taken afresh.

        A store that refuses for good is UnavailableError; one away for now,
        LeaseUnavailable (try again later).
        """
        from entrypoint.lease import LeaseUnavailable

        assert self.lease is not None
        stale = getattr(self.lease, "token", None)
        try:
            acquired = self.lease.acquire()
            if acquired and stale is not None and getattr(self.lease, "token", None) == stale:
                self.lease.release()
                acquired = self.lease.acquire()
        except LeaseUnavailable as exc:
            if exc.permanent:
                raise UnavailableError(f"leader lease: {exc}") from None
            raise
        if acquired:
            self.leader = True
            self._renewed(now)
            self.log.info("leader_acquired", key=self._lease_key, ttl_s=self.lease.ttl)
        return acquired

    def _renewed(self, now: float) -> None:
        assert self.lease is not None
        self._last_renewed = now
        self._next_lease_check = now + self.lease.ttl / 3

    @property
    def _lease_key(self) -> str:
        return self.plan.lease.key if self.plan.lease else ""

    def _lease_deadline(self, now: float) -> float:
        """The last moment the child may run: just before the lease can expire."""
        assert self.lease is not None
        margin = min(1.0, self.lease.ttl / 10)
        return max(now, self._last_renewed + self.lease.ttl - margin)

    def _renew(self, now: float) -> bool:
        """Renew the lease when due (child running or not); False once leadership is lost.

        Checked first on every wakeup: a leader frozen past its lease (SIGSTOP,
        docker pause) learns from the clock alone, before any round trip, that
        another replica may hold the lease by now.
        """
        from entrypoint.lease import LeaseUnavailable

        assert self.lease is not None
        ttl = self.lease.ttl
        if not leader_may_act(last_renewed=self._last_renewed, ttl=ttl, now=now):
            reason = "the lease was not renewed in time (frozen, or the store was away)"
            return self._lost(now, reason)
        if now < self._next_lease_check:
            return True
        try:
            held: bool | None = self.lease.renew()
            error = None
        except LeaseUnavailable as exc:
            held, error = None, str(exc)
        if held:
            self._renewed(now)
            return True
        if held is None and now < leader_acts_until(self._last_renewed, ttl):
            # Unreachable for now: retry soon, while there is time left.
            self._next_lease_check = now + min(1.0, ttl / 6)
            self.log.warning("leader_renew_failed", key=self._lease_key, reason=error)
            return True
        return self._lost(now, error if held is None else "the lease is held by another replica")

    def _lost(self, now: float, reason: str | None) -> bool:
        # The leader's flag: the child is restarted with false first, the lease
        # tried at the next retry. Trying it at once, against a store just found
        # unreachable, would hold that restart for a whole store timeout, in the
        # margin between 2/3 of the TTL and the TTL.
        self._next_acquire = now + self._retry_delay()
        return self._lose(reason)

    def _lose(self, reason: str | None) -> bool:
        self.leader = False
        self._next_lease_check = float("inf")
        self.log.warning("leader_lost", key=self._lease_key, reason=reason)
        return False

    def _release_lease(self) -> None:
        if self.lease is not None and self.leader:
            self.lease.release()
            self.leader = False
            self.log.info("leader_released", key=self._lease_key)

    def _periodic(self) -> list[float]:
        """The deadlines of the checks that run on a timer while a child runs."""
        due = []
        if self.plan.leader_env and self.lease is not None and not self.leader:
            due.append(self._next_acquire)
        if self.handoff is not None:
            due.append(self._next_handoff_check)
        return due

    def _try_lead(self, now: float) -> bool:
        """The leader's flag: one attempt at the lease when due; True when it was taken now."""
        from entrypoint.lease import LeaseUnavailable

        if now < self._next_acquire:
            return False
        self._next_acquire = now + self._retry_delay()
        try:
            return self._acquire(now)
        except LeaseUnavailable:
            return False

    def _flag_changes(self, *, to: bool) -> None:
        assert self.plan.leader_env is not None
        self.log.info(
            "leader_env_changed", name=self.plan.leader_env, value="true" if to else "false"
        )

    def _handoff_asked(self, now: float) -> bool:
        """When due (every TTL/3): register this replica; True when a handoff holds the queue."""
        from entrypoint.lease import LeaseUnavailable
        from entrypoint.lease.handoff import ReplicaState

        assert self.handoff is not None
        assert self.plan.handoff is not None
        if now < self._next_handoff_check:
            return False
        ttl = self.plan.handoff.ttl
        self._next_handoff_check = now + ttl / 3
        try:
            return self.handoff.register(
                self.replica_id,
                ttl,
                state=ReplicaState.RUNNING,
                stop_timeout=self.plan.stop.timeout,
            )
        except LeaseUnavailable as exc:
            self.log.warning("handoff_check_failed", reason=str(exc))
            return False  # the store away: keep working as we are

    def _yield_while_handed_off(self) -> None:
        """Stand by, child stopped, while a handoff holds the queue; raise Stopped on a stop."""
        from entrypoint.lease import LeaseUnavailable
        from entrypoint.lease.handoff import ReplicaState

        assert self.handoff is not None
        assert self.plan.handoff is not None
        ttl = self.plan.handoff.ttl
        yielded = False
        while True:
            self._take_signals()
            if self.inbox.stop_requested:
                raise Stopped
            try:
                state = ReplicaState.YIELDED
                active = self.handoff.report(self.replica_id, state) if yielded else True
                if yielded and not active:
                    active = self.handoff.report(self.replica_id, ReplicaState.RUNNING)
            except LeaseUnavailable as exc:
                self.log.warning("handoff_check_failed", reason=str(exc))
                active = yielded  # the store away: stay as we are
            if not active:
                if yielded:
                    self.log.info("handoff_resumed")
                self._next_handoff_check = self.clock() + ttl / 3
                return
            if not yielded:
                yielded = True
                stopped = self.last_exit is not None and self.last_exit.cause is Cause.HANDOFF
                if not stopped:  # no child to stop: `_run_child` did not say it
                    self.log.info("handoff_yielded", pid=None)
                self._publish(States.YIELDED, detail="a developer's handoff holds the queue")
                continue  # report YIELDED at once: the handoff waits for it
            self._sleep_until(self.clock() + ttl / 3)

    # -- state --------------------------------------------------------------

    def _publish(
        self,
        state: str,
        *,
        detail: str = "",
        restart_at: float | None = None,
        stop_reason: str | None = None,
    ) -> None:
        if state != self._state:
            self._state, self._state_since = state, self.wall()
        self._detail, self._restart_at, self._stop_reason = detail, restart_at, stop_reason
        self.write_state()

    def write_state(self) -> None:
        """Publish the current state (also called by watches when what they know changes)."""
        self.store.write(self.current_state())

    def current_state(self) -> State:
        extra: dict[str, Any] = {}
        for watch in self.watches:
            extra.update(watch.publish())
        last = self.last_exit
        return State(
            mode=self.plan.mode,
            state=self._state,
            supervisor_pid=self._pid,
            supervisor_start=self._start_id,
            child_pid=self.child,
            child_started=self.child_started_wall,
            restarts=self.restarts,
            last_exit=last.code if last else None,
            last_exit_reason=str(self.last_reason) if self.last_reason else None,
            leader=self.leader if self.lease is not None else None,
            since=self._state_since,
            detail=self._detail,
            restart_at=self._restart_at,
            stop_reason=self._stop_reason,
            dependencies_ok=self.dependencies_ok,
            **extra,
        )


def _earliest(current: float | None, candidate: float) -> float:
    return candidate if current is None else min(current, candidate)


def _grew(before: int | None, after: int | None) -> bool:
    return before is not None and after is not None and after > before
