"""`entrypoint health [--ready]` and `entrypoint status`: what the supervisor published.

Liveness (`health`, for HEALTHCHECK and livenessProbe): the supervisor is
alive and its child runs with a fresh heartbeat, or it is a standby, a yielded
replica, or waiting for a dependency (restarting the container cannot fix the
broker). Readiness (`--ready`): the child runs, has said READY=1 (with
ENTRYPOINT_NOTIFY), its heartbeat is fresh, and every dependency answered at
the supervisor's last probe. Both answer from the state file alone: no network
round trip, well under a second. Exec modes (web) probe ENTRYPOINT_HEALTH_URL
when set, else say whether the configuration is valid.
"""

from __future__ import annotations

import os
import time

from entrypoint.cli.inputs import gather
from entrypoint.cli.render import out
from entrypoint.errors import EntrypointError, ExitCode, one_line
from entrypoint.plan.modes import Run
from entrypoint.plan.settings import load
from entrypoint.runtime.state import States, Untrusted, alive, heartbeat_age, read_trusted

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from entrypoint.plan.settings import Settings
    from entrypoint.runtime.state import State

# Liveness holds in these states: the supervisor is doing its job.
_ALIVE_STATES = (States.STARTING, States.WAITING, States.STANDBY, States.YIELDED)
# A stop the supervisor makes to start the child again (not for a failure of
# the child's own, whose heartbeat tells): alive, and not ready.
_PLANNED_STOPS = ("memory", "leadership", "handoff")


def health_command(*, ready: bool = False, flags: Mapping[str, object] | None = None) -> int:
    """Print one line why; 0 when healthy (or ready), 1 otherwise."""
    # The image's CMD is not known here: a placeholder stands for it.
    inputs = gather(os.environ, flags=flags, command=("true",))
    try:
        healthy, why = check(load(inputs), ready=ready)
    except EntrypointError as exc:
        from entrypoint.cli.render import secrets_of
        from entrypoint.plan.redact import redact_text

        message = redact_text(exc.message, secrets_of(inputs.env, inputs.secrets))
        healthy, why = False, f"configuration invalid: {one_line(message)}"
    out(why)
    return ExitCode.OK if healthy else ExitCode.FAILURE


def ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def check(settings: Settings, *, ready: bool = False) -> tuple[bool, str]:
    if settings.spec.run is Run.SUPERVISE:
        return supervised(settings, ready=ready)
    return _exec_mode(settings)


def _exec_mode(settings: Settings) -> tuple[bool, str]:
    mode = settings.mode
    if settings.health is None:
        return True, f"{mode}: configuration valid (no ENTRYPOINT_HEALTH_URL to probe the server)"
    from entrypoint.probes import ProbeError, probe

    try:
        detail = probe(settings.health, timeout=0.8)
    except ProbeError as exc:
        return False, f"{mode}: {settings.health.display} is not healthy: {one_line(exc.message)}"
    return True, f"{mode}: {settings.health.display} answered ({one_line(detail)})"


def supervised(settings: Settings, *, ready: bool = False) -> tuple[bool, str]:
    """(healthy, one line why) from the state the supervisor published."""
    try:
        state = read_trusted(settings.state_file)
    except Untrusted as exc:
        return False, one_line(str(exc))
    now = time.time()
    mode = state.mode
    age = heartbeat_age(state, now)
    facts = _facts(state, age)
    if state.state == States.RUNNING:
        if state.child_pid is None or not alive(state.child_pid):
            return False, f"{mode}: child pid {state.child_pid} is gone"
        if state.heartbeat_max_age and age is not None and age > state.heartbeat_max_age:
            return False, (
                f"{mode}: child pid {state.child_pid} sent no heartbeat for {age:.1f} s "
                f"(limit {state.heartbeat_max_age:g} s){facts}"
            )
        if ready and state.ready is False:
            return False, f"{mode}: child pid {state.child_pid} has not said READY=1 yet{facts}"
        if ready and state.dependencies_ok is False:
            return False, f"{mode}: a dependency did not answer at the last probe{facts}"
        started = state.child_started or state.since
        return True, (
            f"{mode}: child pid {state.child_pid} running for {ago(now - started)}, "
            f"{state.restarts} restarts{facts}"
        )
    detail = f" ({one_line(state.detail)})" if state.detail else ""
    if state.state == States.BACKOFF and state.restart_at is not None:
        detail = f" (restart in {max(0.0, state.restart_at - now):.1f} s)"
    if state.state == States.STOPPING and state.stop_reason:
        detail = f" ({state.stop_reason})"
    text = f"{mode}: {state.state} for {ago(now - state.since)}{detail}"
    if state.state == States.STANDBY:
        text = f"{mode}: standby replica, another one holds the lease"
    elif state.state == States.YIELDED:
        text = f"{mode}: yielded to a handoff, standing by"
    alive_here = state.state in _ALIVE_STATES or (
        state.state == States.STOPPING and state.stop_reason in _PLANNED_STOPS
    )
    return alive_here and not ready, text + (" (not ready)" if ready and alive_here else "")


def _facts(state: State, age: float | None) -> str:
    parts = []
    if state.ready is not None:
        parts.append("ready" if state.ready else "not ready")
    if age is not None:
        parts.append(f"heartbeat {age:.1f} s ago")
    if state.status:
        parts.append(f"status {one_line(state.status)!r}")
    return "; " + ", ".join(parts) if parts else ""


# -- status ---------------------------------------------------------------------


def status_document(settings: Settings) -> dict[str, object]:
    """`entrypoint status --json`: what the supervisor published, and the queue depths now."""
    document: dict[str, object] = {
        "mode": settings.mode,
        "state": None,
        "child_pid": None,
        "uptime_s": None,
        "restarts": None,
        "last_exit_code": None,
        "last_exit_reason": None,
        "ready": None,
        "heartbeat_age_s": None,
        "leader": None,
        "queue_depth": {},
    }
    if settings.spec.run is Run.SUPERVISE:
        try:
            state = read_trusted(settings.state_file)
        except Untrusted as exc:
            document["error"] = one_line(str(exc))
        else:
            now = time.time()
            age = heartbeat_age(state, now)
            started = state.child_started if state.child_pid is not None else None
            document.update(
                mode=state.mode,
                state=state.state,
                child_pid=state.child_pid,
                uptime_s=round(now - started, 3) if started is not None else None,
                restarts=state.restarts,
                last_exit_code=state.last_exit,
                last_exit_reason=state.last_exit_reason,
                ready=state.ready,
                heartbeat_age_s=round(age, 3) if age is not None else None,
                leader=state.leader,
                status=state.status,
            )
    else:
        document["state"] = "exec"
    if settings.depth_specs and settings.resolution.queue is not None:
        from entrypoint.runtime.depth import depth_json, read_depths

        depths = read_depths(settings.resolution.queue, settings.depth_specs, timeout=2.0)
        document["queue_depth"] = depth_json(depths)
        document["queues"] = {depth.label: depth.to_json() for depth in depths}
    return document


def status_text(document: Mapping[str, object]) -> str:
    def shown(value: object) -> str:
        if value is None:
            return "-"
        if isinstance(value, bool):
            return "yes" if value else "no"
        return one_line(str(value))

    lines = [
        f"mode          {shown(document['mode'])}",
        f"state         {shown(document['state'])}",
    ]
    if document.get("error"):
        lines.append(f"error         {shown(document['error'])}")
    for key, label in (
        ("child_pid", "child pid"),
        ("uptime_s", "uptime (s)"),
        ("restarts", "restarts"),
        ("last_exit_code", "last exit"),
        ("last_exit_reason", "last reason"),
        ("ready", "ready"),
        ("status", "status"),
        ("heartbeat_age_s", "heartbeat (s)"),
        ("leader", "leader"),
    ):
        if key in document:
            lines.append(f"{label:<14}{shown(document[key])}")
    queues = document.get("queues")
    if isinstance(queues, dict):
        for label, counts in queues.items():
            assert isinstance(counts, dict)
            if counts.get("up"):
                extra = [f"{k} {counts[k]}" for k in ("delayed", "reserved") if counts.get(k)]
                detail = f"{counts['ready']} ready" + (f", {', '.join(extra)}" if extra else "")
            else:
                detail = f"not read: {shown(counts.get('error'))}"
            lines.append(f"queue         {one_line(label)}: {detail}")
    return "\n".join(lines)


def status_command(*, as_json: bool = False, flags: Mapping[str, object] | None = None) -> int:
    """Print the supervisor's state and the queue depths; 1 when there is no trusted state."""
    import json

    inputs = gather(os.environ, flags=flags, command=("true",))
    try:
        settings = load(inputs)
    except EntrypointError as exc:
        from entrypoint.cli.render import report

        return report(exc, inputs.env, inputs.secrets)
    document = status_document(settings)
    out(json.dumps(document, indent=2) if as_json else status_text(document))
    return ExitCode.FAILURE if document.get("error") else ExitCode.OK
