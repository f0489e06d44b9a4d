"""From settings to a plan: which command runs, and how (exec or supervised).

Pure: nothing here touches a process, a socket or a file. `build_plan` turns
`Settings` into an `ExecPlan` or a `SupervisePlan`, or raises ConfigError
naming every problem (no command for the mode, a lease store that cannot hold
a lease, a stop budget too short under ENTRYPOINT_STRICT=1).
"""

from __future__ import annotations

from entrypoint.errors import ConfigError
from entrypoint.plan.budget import worker_timeout
from entrypoint.plan.leasing import default_handoff_key, lease_backend_problem
from entrypoint.plan.policy import RestartPolicy
from entrypoint.records import StrEnum, dataclass

TYPE_CHECKING = False
if TYPE_CHECKING:
    from entrypoint.plan.depth import DepthSpec
    from entrypoint.plan.settings import Settings
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


# The built-in modes: the one list of them.
BUILTIN_MODES: dict[str, ModeSpec] = {
    "web": ModeSpec("web", Run.EXEC, singleton=False, wait=False),
    "worker": ModeSpec("worker", Run.SUPERVISE, singleton=False, wait=True),
    "scheduler": ModeSpec("scheduler", Run.SUPERVISE, singleton=True, wait=True),
}


@dataclass(frozen=True)
class Notice:
    """A warning the plan carries: logged by `run` under `event`, shown by `check` and `explain`."""

    event: str
    text: str
    fields: tuple[tuple[str, object], ...] = ()


@dataclass(frozen=True)
class StopPolicy:
    signal: int | None  # None: forward the stop signal that was received
    timeout: float
    group: bool


@dataclass(frozen=True)
class LeaseSpec:
    store: Dependency
    key: str
    ttl: float
    origin: str  # where the store comes from: ENTRYPOINT_LEASE_URL or the queue


@dataclass(frozen=True)
class Liveness:
    """What says the child is alive and ready, beyond its existence."""

    notify: bool
    heartbeat_file: str | None
    watchdog_timeout: float  # 0: off
    ready_timeout: float  # 0: off
    heartbeat_max_age: float  # 0: off; `health` only

    @property
    def has_heartbeat(self) -> bool:
        return self.notify or self.heartbeat_file is not None

    @property
    def max_age(self) -> float:
        """The heartbeat age past which the child is not alive (0: no limit)."""
        return self.watchdog_timeout or self.heartbeat_max_age


@dataclass(frozen=True)
class Observability:
    """What the supervisor serves and samples: metrics, queue depth, memory."""

    metrics: tuple[str, int] | None  # (host, port); host "" is every interface
    queue_depth: tuple[DepthSpec, ...]
    queue_store: Dependency | None
    max_rss: str | None  # a size, or a percentage of the cgroup limit (resolved at start)
    memory_interval: float


@dataclass(frozen=True)
class ExecPlan:
    mode: str
    argv: tuple[str, ...]
    command_origin: str
    dependencies: tuple[Dependency, ...]
    notices: tuple[Notice, ...]
    health: Dependency | None
    problems: tuple[str, ...] = ()  # only when built with allow_problems (explain)
    run = Run.EXEC


@dataclass(frozen=True)
class SupervisePlan:
    mode: str
    argv: tuple[str, ...]
    command_origin: str
    dependencies: tuple[Dependency, ...]
    notices: tuple[Notice, ...]
    restart: RestartPolicy
    stop: StopPolicy
    lease: LeaseSpec | None  # the scheduler's lease, or the leader's flag's
    leader_env: str | None
    handoff: LeaseSpec | None  # the store and key replicas yield through
    wait: bool
    wait_timeout: float
    probe_timeout: float
    state_file: str
    liveness: Liveness
    observe: Observability
    problems: tuple[str, ...] = ()  # only when built with allow_problems (explain)
    run = Run.SUPERVISE


Plan = ExecPlan | SupervisePlan


def command_variable(mode: str) -> str:
    """The variable that holds a mode's command: WEB_CMD, WORKER_CMD, HORIZON_CMD..."""
    return "".join(c if c.isascii() and c.isalnum() else "_" for c in mode.upper()) + "_CMD"


def _command(settings: Settings) -> tuple[tuple[str, ...], str]:
    """The mode's command and where it comes from; ConfigError when there is none."""
    mode = settings.mode
    variable = command_variable(mode)
    from_env = {
        "web": settings.web_cmd,
        "worker": settings.worker_cmd,
        "scheduler": settings.scheduler_cmd,
    }.get(mode, settings.custom_cmd)
    if from_env:
        origin = settings.origins.get(f"{mode}_cmd")
        return from_env, origin.label if origin else variable
    configured = settings.modes.get(mode)
    if configured is not None and configured.command:
        return configured.command, f"config file: [modes.{mode}] command"
    if settings.command:
        return settings.command, "CMD"
    hint = f"set {variable}" + (" or give a CMD" if mode in BUILTIN_MODES else "")
    raise ConfigError(f"no command for mode {mode!r}: {hint} (e.g. `entrypoint run -- CMD...`)")


def _lease(settings: Settings, needed_for: str, problems: list[str]) -> LeaseSpec | None:
    queue = settings.resolution.queue
    store = settings.lease_store or queue
    origin = settings.origin("lease_url").label if settings.lease_store else "the queue URL"
    if store is None:
        problems.append(
            f"{needed_for} needs a store for its lease: set ENTRYPOINT_LEASE_URL "
            "(redis:// or postgresql://) or a queue URL"
        )
        return None
    problem = lease_backend_problem(store, f"the lease {needed_for} needs")
    if problem is not None:
        problems.append(problem)
        return None
    key = settings.lease_key or f"entrypoint:lease:{settings.mode}"
    return LeaseSpec(store, key, settings.lease_ttl, origin)


def _notices(settings: Settings, argv: tuple[str, ...], problems: list[str]) -> list[Notice]:
    notices = [Notice("queue_not_checked", text) for text in settings.resolution.warnings]
    notices += [
        Notice("unknown_variable", u.message, (("name", u.name), ("closest", u.closest)))
        for u in settings.unknown
    ]
    budget = worker_timeout(argv)
    if budget is not None and budget.seconds >= settings.stop_timeout:
        text = (
            f"the worker's {budget.option} ({budget.seconds:g} s) is not below "
            f"ENTRYPOINT_STOP_TIMEOUT ({settings.stop_timeout:g} s): a stop would cut "
            "the job in flight; raise ENTRYPOINT_STOP_TIMEOUT above it (and the "
            "orchestrator's grace period above that)"
        )
        fields = (("worker_timeout_s", budget.seconds), ("stop_timeout_s", settings.stop_timeout))
        if settings.strict:
            problems.append(f"{text} (ENTRYPOINT_STRICT=1)")
        notices.append(Notice("stop_budget_short", text, fields))
    return notices


def build_plan(settings: Settings, *, allow_problems: bool = False) -> Plan:
    """The plan for `settings`; ConfigError naming every problem.

    With `allow_problems` (explain), a plan is returned anyway, its problems listed in it.
    """
    spec = settings.spec
    problems: list[str] = []
    try:
        argv, origin = _command(settings)
    except ConfigError as exc:
        problems.extend(exc.problems)
        argv, origin = (), "none"
    notices = _notices(settings, argv, problems)
    dependencies = settings.resolution.all
    if spec.run is Run.EXEC:
        if settings.metrics_addr or settings.max_rss or settings.queue_depth:
            notices.append(
                Notice(
                    "not_supervised",
                    f"mode {spec.name!r} execs its command: nothing serves metrics, reads queue "
                    "depth or watches memory (ENTRYPOINT_METRICS_ADDR, _QUEUE_DEPTH, _MAX_RSS "
                    "apply to supervised modes)",
                )
            )
        if problems and not allow_problems:
            raise ConfigError(problems)
        return ExecPlan(
            spec.name, argv, origin, dependencies, tuple(notices), settings.health, tuple(problems)
        )
    lease = None
    if spec.singleton:
        lease = _lease(settings, f"mode {spec.name!r} (one replica at a time)", problems)
    elif settings.leader_env:
        lease = _lease(settings, "ENTRYPOINT_LEADER_ENV", problems)
    handoff = None
    if settings.handoff:
        store = _lease(settings, "ENTRYPOINT_HANDOFF=1", problems)
        if store is not None:
            key = settings.handoff_key or default_handoff_key(spec.name)
            handoff = LeaseSpec(store.store, key, settings.lease_ttl, store.origin)
    if problems and not allow_problems:
        raise ConfigError(problems)
    return SupervisePlan(
        mode=spec.name,
        argv=argv,
        command_origin=origin,
        dependencies=dependencies,
        notices=tuple(notices),
        restart=RestartPolicy(
            restart=settings.restart,
            min_uptime=settings.min_uptime,
            backoff_initial=settings.backoff_initial,
            backoff_max=settings.backoff_max,
            reset_after=settings.reset_after,
            max_restarts=settings.max_restarts,
            restart_window=settings.restart_window,
        ),
        stop=StopPolicy(settings.stop_signal, settings.stop_timeout, settings.signal_group),
        lease=lease,
        leader_env=settings.leader_env,
        handoff=handoff,
        wait=spec.wait,
        wait_timeout=settings.wait_timeout,
        probe_timeout=settings.probe_timeout,
        state_file=settings.state_file,
        liveness=Liveness(
            notify=settings.notify,
            heartbeat_file=settings.heartbeat_file,
            watchdog_timeout=settings.watchdog_timeout,
            ready_timeout=settings.ready_timeout,
            heartbeat_max_age=settings.heartbeat_max_age,
        ),
        observe=Observability(
            metrics=settings.metrics_addr,
            queue_depth=settings.depth_specs,
            queue_store=settings.resolution.queue,
            max_rss=settings.max_rss,
            memory_interval=settings.memory_interval,
        ),
        problems=tuple(problems),
    )
