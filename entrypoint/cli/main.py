"""The click commands: parse, call, return an exit code. Nothing else.

Reached when a command needs option parsing or `--help` (boot.py runs
`run [--] CMD...` and `health [--ready]` without click). Every command returns
its exit code; every error is rendered by the one `render.report`.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from entrypoint import __version__
from entrypoint.cli.inputs import gather
from entrypoint.cli.render import out, report
from entrypoint.errors import EntrypointError, ExitCode, signal_status
from entrypoint.plan.settings import OPTIONS

F = TypeVar("F", bound=Callable[..., Any])
CMD = click.argument("cmd", nargs=-1, type=click.UNPROCESSED, metavar="[--] [CMD]...")


def settings_options(command: F) -> F:
    """Every setting as a flag, with its environment variable and default shown in --help."""
    for option in reversed(OPTIONS):
        if option.flag:
            default = option.default
            shown = None if default in (None, (), "") else str(default)
            command = click.option(
                option.flag_name,
                option.name,
                envvar=option.env,
                show_envvar=True,
                default=None,
                metavar=option.metavar,
                help=option.help + (f"  [default: {shown}]" if shown is not None else ""),
            )(command)
    return command


def _flags(ctx: click.Context, options: dict[str, Any]) -> dict[str, object]:
    """The options given on the command line (the environment is read by the settings)."""
    return {
        name: value
        for name, value in options.items()
        if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE
    }


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "-V", "--version", prog_name="entrypoint")
def main_group() -> None:
    """A container entrypoint: pick the mode, check the queue, exec or supervise.

    MODE=web (default) execs the web command; MODE=worker supervises the worker
    command (restarts with backoff, forwards signals, stops with a grace
    period, reaps zombies); MODE=scheduler does the same on one replica at a
    time (leader lease).
    """


@main_group.command(
    context_settings={"allow_interspersed_args": False, "ignore_unknown_options": False}
)
@settings_options
@CMD
@click.pass_context
def run(ctx: click.Context, /, cmd: tuple[str, ...], **options: Any) -> int:
    """Run the mode's command: exec it (web) or supervise it (worker, scheduler).

    Everything after `--` (or after the first word that is not an option) is
    CMD, passed through untouched. WEB_CMD, WORKER_CMD and SCHEDULER_CMD, when
    set, take the place of CMD in their mode.
    """
    from entrypoint.cli.run import run_command

    return run_command(tuple(cmd), _flags(ctx, options))


def _plan_of(inputs: Any, *, allow_problems: bool) -> tuple[Any, Any]:
    from entrypoint.plan.modes import build_plan
    from entrypoint.plan.settings import load

    settings = load(inputs)
    return settings, build_plan(settings, allow_problems=allow_problems)


@main_group.command()
@settings_options
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@CMD
@click.pass_context
def explain(ctx: click.Context, /, cmd: tuple[str, ...], as_json: bool, **options: Any) -> int:
    """Print the resolved plan (secrets redacted); run nothing.

    A plan with a problem (no command for the mode, say) is printed with the
    problem named, and the exit status is 78.
    """
    from entrypoint.cli.render import describe, explain_text, secrets_of

    inputs = gather(os.environ, flags=_flags(ctx, options), command=tuple(cmd))
    try:
        settings, plan = _plan_of(inputs, allow_problems=True)
    except EntrypointError as exc:
        return report(exc, inputs.env, inputs.secrets)
    described = describe(plan, settings, secrets_of(inputs.env, inputs.secrets))
    out(json.dumps(described, indent=2) if as_json else explain_text(described))
    return ExitCode.CONFIG if plan.problems else ExitCode.OK


@main_group.command()
@settings_options
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@CMD
@click.pass_context
def check(ctx: click.Context, /, cmd: tuple[str, ...], as_json: bool, **options: Any) -> int:
    """Validate the configuration and probe every dependency once; run nothing.

    Finds every error `run` would: exit 78 when the configuration is wrong
    (a missing command included), 69 when a dependency does not answer, else 0.
    """
    from entrypoint.cli.render import check_json, check_table
    from entrypoint.cli.run import preflight
    from entrypoint.plan.modes import SupervisePlan
    from entrypoint.runtime import waiting

    inputs = gather(os.environ, flags=_flags(ctx, options), command=tuple(cmd))
    try:
        settings, plan = _plan_of(inputs, allow_problems=False)
        problems = preflight(plan) if isinstance(plan, SupervisePlan) else []
        if problems:
            from entrypoint.errors import ConfigError

            raise ConfigError(problems)
    except EntrypointError as exc:
        return report(exc, inputs.env, inputs.secrets)
    from entrypoint import logline
    from entrypoint.cli.run import notice_fields

    for notice in plan.notices:  # the events `run` would log, on stderr as `run` does
        logline.emit(
            sys.stderr,
            settings.log_format,
            settings.log_level,
            "warning",
            notice.event,
            **notice_fields(notice),
        )
    probe_timeout = getattr(plan, "probe_timeout", 3.0)
    results = waiting.check(plan.dependencies, probe_timeout=probe_timeout)
    ok = all(r.ok for r in results)
    if as_json:
        document = {
            "mode": plan.mode,
            "ok": ok,
            "dependencies": [check_json(r) for r in results],
            "warnings": [notice.text for notice in plan.notices],
        }
        out(json.dumps(document, indent=2))
    else:
        out(f"configuration ok: mode {plan.mode} ({plan.run})")
        for notice in plan.notices:
            out(f"warning: {notice.text}")
        out(check_table(results))
    return ExitCode.OK if ok else ExitCode.UNAVAILABLE


@main_group.command()
@settings_options
@click.option("--ready", is_flag=True, help="Readiness instead of liveness.")
@click.pass_context
def health(ctx: click.Context, /, ready: bool, **options: Any) -> int:
    """Exit 0 when healthy (alive; with --ready: ready), 1 otherwise, one line saying why."""
    from entrypoint.cli.health import health_command

    return health_command(ready=ready, flags=_flags(ctx, options))


@main_group.command()
@settings_options
@click.option("--json", "as_json", is_flag=True, help="Print the state as JSON.")
@click.pass_context
def status(ctx: click.Context, /, as_json: bool, **options: Any) -> int:
    """The supervisor's state for a person (`docker exec`): child, restarts, last exit,
    readiness, heartbeat, leadership, queue depths (read now). Exit 1 without a state."""
    from entrypoint.cli.health import status_command

    return status_command(as_json=as_json, flags=_flags(ctx, options))


@main_group.command(context_settings={"allow_interspersed_args": False})
@click.option(
    "--service",
    envvar="ENTRYPOINT_HANDOFF_SERVICE",
    show_envvar=True,
    default="worker",
    show_default=True,
    help="The compose service to pause while CMD runs.",
)
@click.option(
    "--compose-file",
    "-f",
    "compose_files",
    multiple=True,
    envvar="ENTRYPOINT_HANDOFF_COMPOSE_FILE",
    show_envvar=True,
    help="Compose file(s), as `docker compose -f`.",
)
@click.option(
    "--project-name",
    "-p",
    envvar="COMPOSE_PROJECT_NAME",
    show_envvar=True,
    default=None,
    help="Compose project name.",
)
@click.option(
    "--store",
    is_flag=True,
    help="Yield through the queue's store instead of docker: replicas with "
    "ENTRYPOINT_HANDOFF=1 stop their child while CMD runs (any host).",
)
@click.option("--wait", is_flag=True, help="With --store: wait for a handoff that holds the lease.")
@click.argument("cmd", nargs=-1, required=True, type=click.UNPROCESSED, metavar="[--] CMD...")
def handoff(
    *,
    service: str,
    compose_files: tuple[str, ...],
    project_name: str | None,
    store: bool,
    wait: bool,
    cmd: tuple[str, ...],
) -> int:
    """Pause a compose service (or, with --store, every yielding replica) while a dev
    command runs, then resume it.

    The service is stopped only if it is running, and started again on any end
    of CMD (exit, error, Ctrl+C, TERM). Without docker, CMD runs anyway. With
    --store, CMD starts once every replica that yields has stopped its child;
    another handoff holding the lease is exit 75 (unless --wait).
    """
    if store:
        from entrypoint.cli.run import store_handoff

        return store_handoff(tuple(cmd), wait=wait)
    from entrypoint.cli.render import secrets_of
    from entrypoint.runtime import log
    from entrypoint.runtime.handoff import run_handoff

    env = os.environ
    try:
        log.configure(
            env.get("ENTRYPOINT_LOG_LEVEL", "info").strip().lower(),
            env.get("ENTRYPOINT_LOG_FORMAT", "auto").strip().lower(),
            secrets_of(env),
        )
        return run_handoff(
            list(cmd), service=service, compose_files=compose_files, project_name=project_name
        )
    except EntrypointError as exc:
        return report(exc, env)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; click's usage errors exit 64 (the contract), not click's 2."""
    try:
        code = main_group.main(
            args=list(argv) if argv is not None else None,
            prog_name="entrypoint",
            standalone_mode=False,
        )
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.UsageError as exc:
        hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx else ""
        return report(EntrypointError(exc.format_message() + hint, exit_code=ExitCode.USAGE), {})
    except click.ClickException as exc:
        return report(EntrypointError(exc.format_message(), exit_code=ExitCode.USAGE), {})
    except click.Abort:
        return signal_status(signal.SIGINT)
    except EntrypointError as exc:
        return report(exc, os.environ)
    return code if isinstance(code, int) else ExitCode.OK
