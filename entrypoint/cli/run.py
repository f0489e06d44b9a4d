"""`entrypoint run`: settle the plan, then exec it (web) or supervise it (everything else).

The exec path imports builtins only (see boot.py); structlog, tenacity and the
runtime come in only when something is supervised.
"""

from __future__ import annotations

import os
import sys

from entrypoint import logline
from entrypoint.cli.inputs import gather
from entrypoint.cli.render import report
from entrypoint.errors import ConfigError
from entrypoint.plan.modes import ExecPlan, build_plan
from entrypoint.plan.settings import load

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

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
    return problems


def _supervise(plan: SupervisePlan, settings: Settings, inputs: Inputs) -> int:
    from entrypoint.cli.render import secrets_of
    from entrypoint.runtime import children, log, waiting
    from entrypoint.runtime.loop import Loop
    from entrypoint.runtime.signals import SignalInbox
    from entrypoint.runtime.supervisor import Supervisor

    problems = preflight(plan)
    if problems:
        raise ConfigError(problems)
    log.configure(settings.log_level, settings.log_format, secrets_of(inputs.env, inputs.secrets))
    logger = log.get_logger()
    log.bind(mode=plan.mode)
    for notice in plan.notices:
        logger.warning(notice.event, **notice_fields(notice))
    logger.info("mode_selected", action="supervise", command=plan.argv[0])
    loop = Loop()
    inbox = SignalInbox(loop)
    children.become_subreaper()
    lease = None
    if plan.lease is not None:
        from entrypoint.lease import default_holder, open_lease

        lease = open_lease(
            plan.lease.store.url,
            plan.lease.key,
            plan.lease.ttl,
            holder=default_holder(),
            timeout=min(2.0, plan.lease.ttl / 5),
        )
    supervisor = Supervisor(
        plan,
        inbox=inbox,
        lease=lease,
        wait_for_dependencies=waiting.wait_for,
        probe_dependencies=waiting.all_up,
    )
    return supervisor.run()
