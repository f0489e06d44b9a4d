"""What a feature that watches the running child offers the supervisor.

A watch registers its own fds with the Loop if it has any, records what it
learns, says when it next needs a look (`due`), and may ask for the child's
stop (`check`, called after every wakeup while a child runs). Decisions stay
pure (plan/policy.py); the supervisor is the one place that acts on them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Mapping

    from entrypoint.plan.policy import Cause


class StopRequest:
    """A watch's reason to stop the child now, and the event (with fields) that says why."""

    def __init__(self, cause: Cause, event: str, **fields: Any) -> None:
        self.cause = cause
        self.event = event
        self.fields = fields


class Watch(Protocol):
    def child_env(self, env: Mapping[str, str]) -> Mapping[str, str]:
        """The child's environment, with what this watch gives it."""

    def child_started(self, pid: int, now: float) -> None: ...
    def child_exited(self) -> None: ...

    def due(self) -> float | None:
        """When `check` next needs to run (monotonic), None: not before an event."""

    def check(self, now: float) -> StopRequest | None: ...

    def stop_extension(self, since: float) -> float | None:
        """Until when the child asked its stop (signalled at `since`) to wait, if it did."""

    def publish(self) -> Mapping[str, Any]:
        """What this watch adds to the published state."""

    def close(self) -> None: ...
