"""What the metrics endpoint shows of the supervisor: its facts, read at scrape time.

Imported only when ENTRYPOINT_METRICS_ADDR is set (prometheus_client comes with it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from entrypoint.runtime.metrics import Snapshot

if TYPE_CHECKING:
    from collections.abc import Callable

    from entrypoint.runtime.supervisor import Supervisor


def snapshot_of(
    supervisor: Supervisor, *, rss: Callable[[int], int] | None = None
) -> Callable[[], Snapshot]:
    """A `snapshot()` for MetricsServer over `supervisor`'s own facts (no I/O but /proc)."""

    def snapshot() -> Snapshot:
        published: dict[str, Any] = {}
        for watch in supervisor.watches:
            published.update(watch.publish())
        pid = supervisor.child
        uptime = supervisor.clock() - supervisor.child_started_at if pid is not None else 0.0
        age = None
        if published.get("notify") or published.get("heartbeat_file"):
            from entrypoint.runtime.state import heartbeat_age

            age = heartbeat_age(supervisor.current_state())
        ok = supervisor.dependencies_ok
        return Snapshot(
            child_up=pid is not None,
            starts=supervisor.starts,
            exits=dict(supervisor.exits),
            restart_backoff_seconds=supervisor.pending_delay,
            child_uptime_seconds=max(0.0, uptime),
            leader=supervisor.leader if supervisor.lease is not None else None,
            dependencies=tuple(
                (dep.display, bool(ok)) for dep in supervisor.plan.dependencies if ok is not None
            ),
            heartbeat_age_seconds=age,
            child_rss_bytes=rss(pid) if rss is not None and pid is not None else None,
        )

    return snapshot
