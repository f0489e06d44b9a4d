"""Memory recycling: a `Watch` that samples the child's memory and asks for a recycle.

The summed RSS of the child's process group (runtime/memory.py: group_rss) is
read every ENTRYPOINT_MEMORY_INTERVAL while a child runs, and only while
ENTRYPOINT_MAX_RSS is set: there is no such watch otherwise. Above the limit
the child is stopped gracefully (`memory_recycle`) and started again at once,
not counted as a failure (policy.decide, Cause.MEMORY).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from entrypoint.plan.policy import Cause
from entrypoint.runtime.memory import group_rss
from entrypoint.runtime.watch import StopRequest

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping


class MemoryWatch:
    def __init__(
        self, limit: int, interval: float, *, sample: Callable[[int], int] = group_rss
    ) -> None:
        self.limit = limit
        self.interval = interval
        self._sample = sample
        self.pid: int | None = None
        self.next_at: float | None = None
        self.rss: int | None = None

    def child_env(self, env: Mapping[str, str]) -> Mapping[str, str]:
        return env

    def child_started(self, pid: int, now: float) -> None:
        self.pid, self.next_at, self.rss = pid, now + self.interval, None

    def child_exited(self) -> None:
        self.pid = self.next_at = None

    def due(self) -> float | None:
        return self.next_at

    def check(self, now: float) -> StopRequest | None:
        if self.pid is None or self.next_at is None or now < self.next_at:
            return None
        while self.next_at <= now:  # the next sample from this one's deadline, not from now
            self.next_at += self.interval
        self.rss = self._sample(self.pid)
        if self.rss <= self.limit:
            return None
        self.next_at = None  # one recycle per child
        return StopRequest(
            Cause.MEMORY, "memory_recycle", rss_bytes=self.rss, limit_bytes=self.limit
        )

    def stop_extension(self, since: float) -> float | None:
        del since
        return None

    def publish(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        pass
