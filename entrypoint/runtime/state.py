"""The supervisor's state file, and `entrypoint health`, which reads it.

The supervisor rewrites the file (atomically: a temporary file, then rename) on
every change of state, never on a timer. `health` trusts it only as far as the
supervisor that wrote it is still alive: same pid AND same process start time,
so a recycled pid is not mistaken for it.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from entrypoint.plan.settings import Settings


@dataclass(frozen=True)
class State:
    mode: str
    state: str  # starting, running, backoff, standby, stopping, stopped
    supervisor_pid: int
    supervisor_start: str
    child_pid: int | None = None
    restarts: int = 0
    last_exit: int | None = None
    leader: bool | None = None
    since: float = 0.0  # wall-clock time of the last change of state
    detail: str = ""


def process_start(pid: int) -> str:
    """The start time of `pid` in clock ticks since boot ('' when unknown)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read().decode("ascii", "replace")
    except OSError:
        return ""
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else ""


def write_state(path: str, state: State) -> None:
    """Replace the state file atomically; OSError when its directory is not writable."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(prefix=".entrypoint-state.", dir=directory)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(asdict(state), handle)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def read_state(path: str) -> State:
    """The state in `path`; ValueError when it is not a state file."""
    with open(path, encoding="utf-8") as handle:
        data: Any = json.load(handle)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    try:
        return State(**data)
    except TypeError as exc:
        raise ValueError(str(exc)) from None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ago(since: float) -> str:
    seconds = max(0.0, time.time() - since)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def supervised_health(path: str) -> tuple[bool, str]:
    """(healthy, one line why) from the state file written by a supervisor."""
    try:
        state = read_state(path)
    except FileNotFoundError:
        return False, f"no supervisor state at {path} (not started yet, or not supervised)"
    except (OSError, ValueError) as exc:
        return False, f"state file {path} is unreadable or corrupt ({exc})"
    if not _alive(state.supervisor_pid) or (
        state.supervisor_start and process_start(state.supervisor_pid) != state.supervisor_start
    ):
        return False, f"supervisor pid {state.supervisor_pid} is not running (stale state file)"
    if state.state == "running":
        if state.child_pid is None or not _alive(state.child_pid):
            return False, f"{state.mode}: child pid {state.child_pid} is gone"
        return True, (
            f"{state.mode}: child pid {state.child_pid} running for {_ago(state.since)}"
            f", {state.restarts} restarts"
        )
    if state.state == "standby":
        return True, f"{state.mode}: standby replica, another one holds the lease"
    detail = f" ({state.detail})" if state.detail else ""
    return False, f"{state.mode}: {state.state} for {_ago(state.since)}{detail}"


def check_health(settings: Settings) -> tuple[bool, str]:
    """Supervised modes: the state file. Exec modes: ENTRYPOINT_HEALTH_URL, else the config."""
    from entrypoint.errors import EntrypointError
    from entrypoint.plan.modes import Run, build_plan, mode_spec

    if mode_spec(settings).run is Run.SUPERVISE:
        return supervised_health(settings.state_file)
    try:
        plan = build_plan(settings, dict(os.environ))
    except EntrypointError as exc:
        return False, f"{settings.mode}: configuration invalid: {exc.message}"
    if plan.health is None:
        return True, (
            f"{plan.mode}: configuration valid (no ENTRYPOINT_HEALTH_URL to probe the server)"
        )
    from entrypoint.probes import ProbeError, probe

    try:
        detail = probe(plan.health, timeout=0.8)
    except ProbeError as exc:
        return False, f"{plan.mode}: {plan.health.display} is not healthy: {exc}"
    return True, f"{plan.mode}: {plan.health.display} answered ({detail})"


def main() -> int:
    """`entrypoint health` without options: the HEALTHCHECK's path, kept off click."""
    from entrypoint.errors import EntrypointError
    from entrypoint.plan.settings import load, read_config_file

    env = dict(os.environ)
    try:
        config = env.get("ENTRYPOINT_CONFIG", "").strip() or None
        file = read_config_file(config) if config else None
        # The image's CMD is not known here: a placeholder stands for it.
        settings = load(flags={}, env=env, file=file, file_path=config, command=("true",))
        healthy, why = check_health(settings)
    except EntrypointError as exc:
        healthy, why = False, f"configuration invalid: {exc.message}"
    print(why)
    return 0 if healthy else 1
