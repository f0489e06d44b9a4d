"""The child's liveness: READY=1, STATUS=, heartbeats, the watchdog and the ready timeout.

A `Watch` of the supervisor. With ENTRYPOINT_NOTIFY=1 it owns the notify
socket (runtime/notify.py) and learns what the child says as datagrams arrive
on the Loop; with ENTRYPOINT_HEARTBEAT_FILE it `stat`s the file, but only when
a deadline needs it. Deadlines and the decision are policy.liveness_due and
policy.overdue; this module only records facts and answers the supervisor.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from entrypoint.plan.policy import Cause, liveness_due, overdue
from entrypoint.runtime import notify
from entrypoint.runtime.watch import StopRequest

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from entrypoint.plan.modes import Liveness
    from entrypoint.runtime.loop import Loop

# The state file records a WATCHDOG=1 at most this often (health reads the
# heartbeat there), and at least a tenth of the heartbeat's limit as often: what
# `health` reads is never older than the truth by more than that. No timer:
# a skipped heartbeat is written with the next one.
PUBLISH_EVERY = 1.0


class LivenessWatch:
    """What the child said and when it last gave a sign of life."""

    def __init__(
        self,
        liveness: Liveness,
        loop: Loop,
        *,
        publish: Callable[[], None],
        logger: Any,
        wall: Callable[[], float] = time.time,
        environ: Mapping[str, str] = os.environ,
    ) -> None:
        self.liveness = liveness
        self.loop = loop
        self.clock = loop.clock
        self.wall = wall
        self.log = logger
        self._publish_state = publish
        self.socket: notify.NotifySocket | None = None
        self.upstream: notify.Upstream | None = None
        if liveness.notify:
            self.socket = notify.NotifySocket()
            self.socket.register(loop, self._on_message)
            inherited = notify.parse_inherited(environ.get("NOTIFY_SOCKET"))
            if inherited is not None and inherited.address is not None:
                self.upstream = notify.Upstream(inherited.address)
            elif inherited is not None:
                logger.warning("notify_socket_ignored", reason=inherited.reason)
        self.state = notify.ChildState()
        self.started: float | None = None
        self.beat: float | None = None  # monotonic, the last WATCHDOG=1 or newer file mtime
        self.beat_wall: float | None = None
        self.triggered = False
        self.extended_until: float | None = None
        self._extended_at: float | None = None  # when the last EXTEND_TIMEOUT_USEC came
        self._published_at = 0.0

    @property
    def watchdog_usec(self) -> int:
        return int(self.liveness.watchdog_timeout * 1e6)

    # -- the Watch protocol --------------------------------------------------------

    def child_env(self, env: Mapping[str, str]) -> Mapping[str, str]:
        if self.socket is None:
            return env
        return notify.child_environment(
            env, self.socket.env_value, watchdog_usec=self.watchdog_usec
        )

    def child_started(self, pid: int, now: float) -> None:
        del pid
        if self.socket is not None:
            self.socket.discard()  # a READY=1 of the child that just died is not this one's
        self.state = notify.ChildState()
        self.started, self.beat, self.beat_wall = now, None, None
        self.triggered = False
        self.extended_until = self._extended_at = None

    def child_exited(self) -> None:
        if self.socket is not None:
            self.socket.deliver_queued()  # its last words, sent before it exited
        self.started = None

    def due(self) -> float | None:
        if self.started is None:
            return None
        if self.triggered:
            return self.clock()
        return liveness_due(
            started=self.started,
            last_heartbeat=self.beat,
            ready=self.state.ready,
            watchdog_timeout=self.liveness.watchdog_timeout,
            ready_timeout=self._ready_timeout(),
        )

    def check(self, now: float) -> StopRequest | None:
        if self.started is None:
            return None
        if self.triggered:
            self.triggered = False
            return StopRequest(Cause.WATCHDOG, "watchdog_expired", age_s=0.0, trigger=True)
        late = self._overdue(now)
        if late is not None and self.liveness.heartbeat_file:
            self._stat_heartbeat_file(now)  # only now, when a deadline says it is needed
            late = self._overdue(now)
        if late is None:
            return None
        return StopRequest(Cause.WATCHDOG, late.event, age_s=round(late.age, 3))

    def stop_extension(self, since: float) -> float | None:
        """Until when the child asked for its stop to wait, if it asked during the stop.

        As in systemd, EXTEND_TIMEOUT_USEC extends the timeout of the state it
        is sent in: one sent at the start (for the ready deadline) or while
        running does not move a later stop. `since` is when the supervisor
        sent the stop signal; what arrived before it was sent before the child
        knew of the stop, even when it is read in the same wakeup.
        """
        if self._extended_at is None or self._extended_at < since:
            return None
        return self.extended_until

    def publish(self) -> dict[str, Any]:
        return {
            "ready": self.state.ready if self.liveness.notify else None,
            "status": self.state.status or None,
            "notify": self.liveness.notify,
            "heartbeat": self.beat_wall if self.liveness.notify else None,
            "heartbeat_file": self.liveness.heartbeat_file,
            "heartbeat_max_age": self.liveness.max_age,
        }

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close()
        if self.upstream is not None:
            self.upstream.close()

    # -- facts ----------------------------------------------------------------------

    def _ready_timeout(self) -> float:
        timeout = self.liveness.ready_timeout
        if timeout and self.extended_until is not None and self.started is not None:
            timeout = max(timeout, self.extended_until - self.started)
        return timeout

    def _overdue(self, now: float) -> Any:
        assert self.started is not None
        return overdue(
            now,
            started=self.started,
            last_heartbeat=self.beat,
            ready=self.state.ready,
            watchdog_timeout=self.liveness.watchdog_timeout,
            ready_timeout=self._ready_timeout(),
        )

    def _stat_heartbeat_file(self, now: float) -> None:
        assert self.liveness.heartbeat_file is not None
        try:
            mtime = os.stat(self.liveness.heartbeat_file).st_mtime
        except OSError:
            return  # missing: "no heartbeat since the start"
        beat = now - max(0.0, self.wall() - mtime)  # the wall-clock mtime on the monotonic clock
        if self.beat is None or beat > self.beat:
            self.beat = beat

    def _on_message(self, message: notify.Notification, sender: int) -> None:
        if self.started is None:
            return  # between two children: nobody to credit
        before = self.state
        self.state = notify.advance(self.state, message)
        now = self.clock()
        if message.watchdog:
            self.beat, self.beat_wall = now, self.wall()
            self._publish_soon(now)
        if message.watchdog_trigger:
            self.triggered = True
        if message.extend_timeout_usec is not None:
            self.extended_until = now + message.extend_timeout_usec / 1e6
            self._extended_at = now
        if self.state.ready and not before.ready:
            self.log.info("child_ready", sender_pid=sender)
        if self.state.status != before.status:
            self.log.info("child_status", status=self.state.status, sender_pid=sender)
        if self.state.stopping and not before.stopping:
            self.log.info("child_stopping", sender_pid=sender)
        if self.state != before:
            self._publish_now()
        if self.upstream is not None:
            self.upstream.send(message)

    def _publish_now(self) -> None:
        self._published_at = self.clock()
        self._publish_state()

    def _publish_soon(self, now: float) -> None:
        limit = self.liveness.max_age
        every = min(PUBLISH_EVERY, limit / 10) if limit else PUBLISH_EVERY
        if now - self._published_at >= every:
            self._publish_now()
