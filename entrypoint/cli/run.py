"""`entrypoint run`: settle the plan, then exec it (web) or supervise it (everything else).

The exec path imports builtins only (see boot.py); structlog, tenacity and the
runtime come in only when something is supervised.
"""

from __future__ import annotations

import os
import sys

from entrypoint import logline
from entrypoint.cli.inputs import gather
from entrypoint.errors import ConfigError
from entrypoint.plan.modes import ExecPlan, build_plan
from entrypoint.plan.settings import load

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from entrypoint.plan.modes import Notice, SupervisePlan
    from entrypoint.plan.settings import Inputs, Settings


def run_command(command: tuple[str, ...], flags: Mapping[str, object] | None = None) -> int:
    """Run CMD (or the mode's command) as the settings say; any error is its one line."""
    inputs = gather(os.environ, flags=flags, command=command)
    try:
        return run(inputs)
    except BaseException as exc:
        if isinstance(exc, SystemExit | KeyboardInterrupt):
            raise
        from entrypoint.cli.render import report  # an error's path only

        return report(exc, inputs.env, inputs.secrets)


def run(inputs: Inputs) -> int:
    settings = load(inputs)
    plan = build_plan(settings)
    if isinstance(plan, ExecPlan):
        return _exec(plan, settings)
    return _supervise(plan, settings, inputs)


def notice_fields(notice: Notice) -> dict[str, object]:
    fields: dict[str, object] = {"reason": notice.text}
    fields.update(notice.fields)
    return fields


def _exec(plan: ExecPlan, settings: Settings) -> int:
    from entrypoint.runtime.execute import exec_command

    fmt, level = settings.log_format, settings.log_level
    for notice in plan.notices:
        logline.emit(sys.stderr, fmt, level, "warning", notice.event, **notice_fields(notice))
    logline.emit(
        sys.stderr, fmt, level, "info", "mode_selected",
        mode=plan.mode, action="exec", command=plan.argv[0],
    )  # fmt: skip
    return exec_command(plan.argv)


def preflight(plan: SupervisePlan) -> list[str]:
    """What only the machine can tell about a supervised plan (a missing directory, say)."""
    problems = []
    heartbeat = plan.liveness.heartbeat_file
    if heartbeat and not os.path.isdir(os.path.dirname(os.path.abspath(heartbeat))):
        problems.append(
            f"ENTRYPOINT_HEARTBEAT_FILE={heartbeat!r}: its directory does not exist, "
            "so the worker could never touch it"
        )
    if plan.observe.max_rss:
        try:
            max_rss_bytes(plan)
        except ConfigError as exc:
            problems.extend(exc.problems)
    return problems


def max_rss_bytes(plan: SupervisePlan) -> int | None:
    """ENTRYPOINT_MAX_RSS in bytes; a percentage is of the cgroup's memory limit."""
    text = plan.observe.max_rss
    if text is None:
        return None
    from entrypoint.plan.sizes import is_percentage, parse_size

    limit = None
    if is_percentage(text):
        from entrypoint.runtime import memory

        limit = memory.memory_limit(memory.find_cgroup())
    try:
        return parse_size(text, limit)
    except ValueError as exc:
        raise ConfigError(f"ENTRYPOINT_MAX_RSS={text}: {exc}") from None


def _supervise(plan: SupervisePlan, settings: Settings, inputs: Inputs) -> int:
    from entrypoint.cli.render import secrets_of
    from entrypoint.runtime import children, log, memory
    from entrypoint.runtime.loop import Loop
    from entrypoint.runtime.signals import SignalInbox
    from entrypoint.runtime.supervisor import Supervisor
    from entrypoint.runtime.watch import Watch

    problems = preflight(plan)
    if problems:
        raise ConfigError(problems)
    limit = max_rss_bytes(plan)
    log.configure(settings.log_level, settings.log_format, secrets_of(inputs.env, inputs.secrets))
    logger = log.get_logger()
    log.bind(mode=plan.mode)
    for notice in plan.notices:
        logger.warning(notice.event, **notice_fields(notice))
    logger.info("mode_selected", action="supervise", command=plan.argv[0])
    from entrypoint.lease import lease_clock

    loop = Loop(clock=lease_clock)  # the supervisor's clock too: it counts suspended time
    inbox = SignalInbox(loop)
    children.become_subreaper()
    lease = None
    if plan.lease is not None:
        from entrypoint.lease import default_holder, open_lease

        lease = open_lease(
            plan.lease.store,
            plan.lease.key,
            plan.lease.ttl,
            holder=default_holder(),
            timeout=min(2.0, plan.lease.ttl / 5),
        )
    handoff = replica_id = None
    if plan.handoff is not None:
        from entrypoint.lease import default_holder, open_handoff_store
        from entrypoint.runtime.handoff_store import store_timeout

        spec = plan.handoff
        handoff = open_handoff_store(
            spec.store, spec.key, spec.ttl, timeout=store_timeout(spec.ttl)
        )
        replica_id = default_holder()
    watches: list[Watch] = []
    supervisor: Supervisor | None = None

    def publish() -> None:
        if supervisor is not None:
            supervisor.write_state()

    liveness = plan.liveness
    if liveness.has_heartbeat or liveness.ready_timeout:
        from entrypoint.runtime.liveness import LivenessWatch

        watches.append(LivenessWatch(liveness, loop, publish=publish, logger=logger))
    if limit is not None:
        from entrypoint.runtime.recycle import MemoryWatch

        watches.append(MemoryWatch(limit, plan.observe.memory_interval))
    cgroup = memory.find_cgroup()
    supervisor = Supervisor(
        plan,
        clock=loop.clock,
        inbox=inbox,
        lease=lease,
        handoff=handoff,
        replica_id=replica_id or "",
        watches=watches,
        **_waiting(plan),
        oom_kills=lambda: memory.oom_kills(cgroup),
    )
    server = _serve_metrics(plan, supervisor, loop, logger)
    try:
        return supervisor.run()
    finally:
        if server is not None:
            server.close()
        if handoff is not None:
            handoff.close()


def _waiting(plan: SupervisePlan) -> dict[str, Any]:
    """The dependency wait, imported only when there is something to wait for (tenacity, ssl)."""
    if not plan.dependencies:
        return {}
    from entrypoint.runtime import waiting

    return {"wait_for_dependencies": waiting.wait_for, "probe_dependencies": waiting.all_up}


def _serve_metrics(plan: SupervisePlan, supervisor: Any, loop: Any, logger: Any) -> Any:
    """The metrics endpoint, when ENTRYPOINT_METRICS_ADDR asks for it; a taken port is a warning."""
    address = plan.observe.metrics
    if address is None:
        return None
    from entrypoint.plan.addresses import display_address
    from entrypoint.runtime.memory import group_rss
    from entrypoint.runtime.metrics import MetricsServer, MetricsUnavailable
    from entrypoint.runtime.observe import snapshot_of

    depths = None
    if plan.observe.queue_depth and plan.observe.queue_store is not None:
        from entrypoint.runtime.depth import QueueDepths

        depths = QueueDepths(loop, plan.observe.queue_store, plan.observe.queue_depth)
    host, port = address
    try:
        server = MetricsServer(
            loop, host, port, snapshot_of(supervisor, rss=group_rss), depths=depths
        )
    except MetricsUnavailable as exc:
        logger.warning("metrics_unavailable", addr=display_address(host, port), error=str(exc))
        return None
    logger.info("metrics_listening", addr=display_address(*server.address))
    return server


def store_handoff(command: tuple[str, ...], *, wait: bool) -> int:
    """`entrypoint handoff --store -- CMD`: CMD runs while the replicas yield to it.

    It reads what the replicas read: the store of ENTRYPOINT_LEASE_URL (else the
    queue's), ENTRYPOINT_HANDOFF_KEY (else entrypoint:handoff:<MODE>, MODE
    defaulting to worker), ENTRYPOINT_LEASE_TTL.
    """
    inputs = gather(os.environ, command=command)
    try:
        from entrypoint.plan.leasing import default_handoff_key, lease_backend_problem
        from entrypoint.runtime import log
        from entrypoint.runtime.handoff_store import run_store_handoff

        settings = load(inputs)
        store = settings.lease_store or settings.resolution.queue
        if store is None:
            raise ConfigError(
                "handoff --store needs the replicas' store: set QUEUE_URL (or QUEUE_CONNECTION) "
                "or ENTRYPOINT_LEASE_URL, as the replicas have them"
            )
        problem = lease_backend_problem(store, "the handoff lease")
        if problem is not None:
            raise ConfigError(problem)
        mode = settings.mode if "mode" in settings.origins else None
        key = settings.handoff_key or default_handoff_key(mode)
        from entrypoint.cli.render import secrets_of

        log.configure(
            settings.log_level, settings.log_format, secrets_of(inputs.env, inputs.secrets)
        )
        return run_store_handoff(
            command, store=store, key=key, ttl=settings.lease_ttl, wait=wait, log=log.get_logger()
        )
    except BaseException as exc:
        if isinstance(exc, SystemExit | KeyboardInterrupt):
            raise
        from entrypoint.cli.render import report  # an error's path only

        return report(exc, inputs.env, inputs.secrets)
