"""From settings to a plan: which command runs, and how (exec or supervised).

Pure: nothing here touches a process, a socket or a file.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from entrypoint.errors import ConfigError
from entrypoint.plan.policy import RestartPolicy
from entrypoint.plan.settings import BUILTIN_MODES, Settings, command_variable

if TYPE_CHECKING:
    from entrypoint.plan.urls import Dependency


class Run(StrEnum):
    EXEC = "exec"
    SUPERVISE = "supervise"


@dataclass(frozen=True)
class ModeSpec:
    name: str
    run: Run
    singleton: bool
    wait: bool


BUILTIN_SPECS = {
    "web": ModeSpec("web", Run.EXEC, singleton=False, wait=False),
    "worker": ModeSpec("worker", Run.SUPERVISE, singleton=False, wait=True),
    "scheduler": ModeSpec("scheduler", Run.SUPERVISE, singleton=True, wait=True),
}


@dataclass(frozen=True)
class StopPolicy:
    signal: int | None  # None: forward the stop signal that was received
    timeout: float
    group: bool


@dataclass(frozen=True)
class LeaseSpec:
    url: str
    key: str
    ttl: float
    source: str


@dataclass(frozen=True)
class Plan:
    mode: str
    run: Run
    argv: tuple[str, ...]
    command_source: str
    dependencies: tuple[Dependency, ...]
    warnings: tuple[str, ...]
    restart: RestartPolicy
    stop: StopPolicy
    lease: LeaseSpec | None
    wait: bool
    wait_timeout: float
    probe_timeout: float
    state_file: str
    health: Dependency | None


def mode_spec(settings: Settings) -> ModeSpec:
    builtin = BUILTIN_SPECS.get(settings.mode)
    configured = settings.modes.get(settings.mode)
    if configured is None:
        assert builtin is not None  # settings.load rejects any other mode
        return builtin
    supervise = configured.supervise
    if supervise is None:
        supervise = builtin.run is Run.SUPERVISE if builtin else True
    singleton = configured.singleton
    if singleton is None:
        singleton = builtin.singleton if builtin else False
    wait = configured.wait if configured.wait is not None else supervise
    return ModeSpec(settings.mode, Run.SUPERVISE if supervise else Run.EXEC, singleton, wait)


def _command(settings: Settings) -> tuple[tuple[str, ...], str]:
    mode = settings.mode
    variable = command_variable(mode)
    from_env: tuple[str, ...] | None = {
        "web": settings.web_cmd,
        "worker": settings.worker_cmd,
        "scheduler": settings.scheduler_cmd,
    }.get(mode, settings.custom_cmd)
    if from_env:
        source = settings.sources.get(variable.lower(), variable)
        return from_env, variable if source == "default" else source
    configured = settings.modes.get(mode)
    if configured is not None and configured.command:
        return configured.command, f"config file: [modes.{mode}] command"
    if settings.command:
        return settings.command, "CMD"
    hint = f"set {variable}" + (" or give a CMD" if mode in BUILTIN_MODES else "")
    raise ConfigError(f"no command for mode {mode!r}: {hint} (e.g. `entrypoint run -- CMD...`)")


def effective(settings: Settings) -> dict[str, Any]:
    """The supervision settings, with the mode's own overrides from the file applied.

    A mode table only overrides what neither a flag nor the environment set.
    """
    values = {name: getattr(settings, name) for name in settings.sources}
    configured = settings.modes.get(settings.mode)
    if configured is not None:
        for name, value in configured.overrides.items():
            source = settings.sources.get(name, "default")
            if source == "default" or source.startswith(("config file", "ENTRYPOINT_CONFIG=")):
                values[name] = value
    return values


def build_plan(settings: Settings, env: dict[str, str] | None = None) -> Plan:
    """The plan for `settings`; ConfigError when the mode has no command or a bad URL."""
    from entrypoint.plan import deps
    from entrypoint.plan.urls import parse_url

    spec = mode_spec(settings)
    argv, source = _command(settings)
    values = effective(settings)
    resolve_env = dict(env or {})
    if values["wait_for"]:
        resolve_env["ENTRYPOINT_WAIT_FOR"] = ",".join(values["wait_for"])
    else:
        resolve_env.pop("ENTRYPOINT_WAIT_FOR", None)
    problems: list[str] = []
    dependencies: tuple[Dependency, ...] = ()
    warnings: tuple[str, ...] = ()
    queue_url: str | None = None
    try:
        resolution = deps.resolve(resolve_env)
        dependencies, warnings = resolution.all, resolution.warnings
        queue_url = resolution.queue.url if resolution.queue else None
    except ConfigError as exc:
        problems.extend(exc.problems)
    health = None
    if values["health_url"]:
        try:
            health = parse_url(values["health_url"], "ENTRYPOINT_HEALTH_URL")
        except ConfigError as exc:
            problems.extend(exc.problems)
    lease = None
    if spec.singleton and spec.run is Run.SUPERVISE:
        url = values["lease_url"] or queue_url
        lease_source = "ENTRYPOINT_LEASE_URL" if values["lease_url"] else "queue URL"
        if not url:
            problems.append(
                f"mode {spec.name!r} runs one replica at a time and needs a lease: "
                "set ENTRYPOINT_LEASE_URL (redis:// or postgresql://) or a queue URL"
            )
        else:
            key = values["lease_key"] or f"entrypoint:lease:{spec.name}"
            lease = LeaseSpec(url, key, values["lease_ttl"], lease_source)
    if problems:
        raise ConfigError(problems)
    return Plan(
        mode=spec.name,
        run=spec.run,
        argv=argv,
        command_source=source,
        dependencies=dependencies,
        warnings=warnings,
        restart=RestartPolicy(
            min_uptime=values["min_uptime"],
            backoff_initial=values["backoff_initial"],
            backoff_max=values["backoff_max"],
            reset_after=values["reset_after"],
            max_restarts=values["max_restarts"],
            restart_window=values["restart_window"],
        ),
        stop=StopPolicy(values["stop_signal"], values["stop_timeout"], values["signal_group"]),
        lease=lease,
        wait=spec.wait,
        wait_timeout=values["wait_timeout"],
        probe_timeout=values["probe_timeout"],
        state_file=values["state_file"],
        health=health,
    )
