"""The click commands: parse, call, map errors to exit codes. Nothing else.

`sys.exit` happens only here (and in `boot`, for the fast path). Every error
is an `EntrypointError` carrying its exit code and an already redacted message.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click
from click.core import ParameterSource

from entrypoint import __version__
from entrypoint.errors import EntrypointError, ExitCode
from entrypoint.plan.redact import redact_text, secret_values
from entrypoint.plan.settings import OPTIONS, Settings, load, read_config_file

if TYPE_CHECKING:
    from entrypoint.plan.modes import Plan

F = TypeVar("F", bound=Callable[..., Any])


def settings_options(command: F) -> F:
    """Every setting as a flag, with its environment variable shown in --help."""
    for option in reversed(OPTIONS):
        if option.flag:
            command = click.option(
                option.flag_name,
                option.name,
                envvar=option.env,
                show_envvar=True,
                default=None,
                metavar=option.metavar,
                help=option.help,
            )(command)
    return command


def _settings(ctx: click.Context, options: dict[str, Any], cmd: Sequence[str] = ()) -> Settings:
    """Settle the options: flags from click, the environment and the file read here."""
    flags = {
        name: value
        for name, value in options.items()
        if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE
    }
    env = dict(os.environ)
    config = flags.get("config") or env.get("ENTRYPOINT_CONFIG", "").strip() or None
    file = read_config_file(config) if config else None
    return load(flags=flags, env=env, file=file, file_path=config, command=tuple(cmd))


def _plan(settings: Settings) -> Plan:
    from entrypoint.plan.modes import build_plan

    return build_plan(settings, dict(os.environ))


def _configure_logs(settings: Settings) -> None:
    from entrypoint.runtime import log

    log.configure(settings.log_level, settings.log_format, secret_values(os.environ))


def _fail(message: str, code: int) -> None:
    click.echo(f"entrypoint: error: {redact_text(message, secret_values(os.environ))}", err=True)
    sys.exit(code)


class Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EntrypointError as exc:
            _fail(exc.message, exc.exit_code)


@click.group(
    cls=Group,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
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
@click.argument("cmd", nargs=-1, type=click.UNPROCESSED, metavar="[--] [CMD]...")
@click.pass_context
def run(ctx: click.Context, /, cmd: tuple[str, ...], **options: Any) -> None:
    """Run the mode's command: exec it (web) or supervise it (worker, scheduler).

    Everything after `--` (or after the first word that is not an option) is
    CMD, passed through untouched. WEB_CMD, WORKER_CMD and SCHEDULER_CMD, when
    set, take the place of CMD in their mode.
    """
    from entrypoint import boot
    from entrypoint.plan.modes import Run
    from entrypoint.runtime import log

    settings = _settings(ctx, options, cmd)
    plan = _plan(settings)
    _configure_logs(settings)
    logger = log.get_logger()
    log.bind(mode=plan.mode)
    for warning in plan.warnings:
        logger.warning("queue_not_checked", reason=warning)
    if plan.run is Run.EXEC:
        logger.info("mode_selected", action="exec", command=plan.argv[0])
        sys.exit(boot.exec_command(list(plan.argv)))
    logger.info("mode_selected", action="supervise", command=plan.argv[0])
    sys.exit(_supervise(plan))


def _wait_for(*args: Any, **kwargs: Any) -> bool:
    from entrypoint.runtime import waiting

    return waiting.wait_for(*args, **kwargs)


def _supervise(plan: Plan) -> int:
    from entrypoint.runtime import children
    from entrypoint.runtime.signals import SignalInbox
    from entrypoint.runtime.supervisor import Supervisor

    inbox = SignalInbox()
    children.become_subreaper()
    lease = None
    if plan.lease is not None:
        from entrypoint.lease import default_holder, open_lease

        lease = open_lease(
            plan.lease.url,
            plan.lease.key,
            plan.lease.ttl,
            holder=default_holder(),
            timeout=min(2.0, plan.lease.ttl / 5),
        )
    supervisor = Supervisor(plan, inbox=inbox, lease=lease, wait_for_dependencies=_wait_for)
    return supervisor.run()


def describe(plan: Plan) -> dict[str, Any]:
    """The plan as plain values, secrets redacted: what `explain` shows."""
    from entrypoint.runtime.signals import signal_name

    secrets = secret_values(os.environ)
    restart = plan.restart
    return {
        "mode": plan.mode,
        "run": str(plan.run),
        "command": [redact_text(word, secrets) for word in plan.argv],
        "command_source": plan.command_source,
        "dependencies": [
            {"url": dep.display, "source": dep.source, "depth": str(dep.depth)}
            for dep in plan.dependencies
        ],
        "wait": {
            "before_start": plan.wait and bool(plan.dependencies),
            "timeout_s": plan.wait_timeout,
            "probe_timeout_s": plan.probe_timeout,
        },
        "warnings": list(plan.warnings),
        "restart": {
            "min_uptime_s": restart.min_uptime,
            "backoff_initial_s": restart.backoff_initial,
            "backoff_max_s": restart.backoff_max,
            "reset_after_s": restart.reset_after,
            "max_restarts": restart.max_restarts,
            "restart_window_s": restart.restart_window,
        },
        "stop": {
            "signal": signal_name(plan.stop.signal) if plan.stop.signal else "as received",
            "timeout_s": plan.stop.timeout,
            "to": "process group" if plan.stop.group else "child",
        },
        "lease": None
        if plan.lease is None
        else {
            "url": redact_text(plan.lease.url, secrets),
            "key": plan.lease.key,
            "ttl_s": plan.lease.ttl,
            "source": plan.lease.source,
        },
        "health_url": plan.health.display if plan.health else None,
        "state_file": plan.state_file,
    }


def _render_text(described: dict[str, Any]) -> str:
    import shlex

    restart, stop = described["restart"], described["stop"]
    limit = (
        f"give up after {restart['max_restarts']} restarts in {restart['restart_window_s']:g} s"
        if restart["max_restarts"]
        else "no restart limit"
    )
    lines = [
        f"mode          {described['mode']} ({described['run']})",
        f"command       {shlex.join(described['command'])}   [from {described['command_source']}]",
    ]
    if described["run"] == "supervise":
        backoff = (
            f"{restart['backoff_initial_s']:g} s doubling to {restart['backoff_max_s']:g} s, "
            f"reset after {restart['reset_after_s']:g} s up"
        )
        lines += [
            (
                f"restart       at once after a clean exit past {restart['min_uptime_s']:g} s; "
                f"else backoff {backoff}; {limit}"
            ),
            (
                f"stop          signal {stop['signal']} to the {stop['to']}, "
                f"SIGKILL after {stop['timeout_s']:g} s"
            ),
            f"state file    {described['state_file']}",
        ]
        wait = described["wait"]
        lines.append(
            f"wait          up to {wait['timeout_s']:g} s before the first start"
            if wait["before_start"]
            else "wait          nothing to wait for"
        )
    for dep in described["dependencies"]:
        lines.append(f"dependency    {dep['url']}  [from {dep['source']}, depth {dep['depth']}]")
    if described["lease"]:
        lease = described["lease"]
        lines.append(
            f"lease         {lease['key']} at {lease['url']} [from {lease['source']}], "
            f"ttl {lease['ttl_s']:g} s"
        )
    if described["health_url"]:
        lines.append(f"health        {described['health_url']}")
    lines += [f"warning       {warning}" for warning in described["warnings"]]
    return "\n".join(lines)


@main_group.command()
@settings_options
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.argument("cmd", nargs=-1, type=click.UNPROCESSED, metavar="[--] [CMD]...")
@click.pass_context
def explain(ctx: click.Context, /, cmd: tuple[str, ...], as_json: bool, **options: Any) -> None:
    """Print the resolved plan (secrets redacted); run nothing."""
    described = describe(_plan(_settings(ctx, options, cmd)))
    click.echo(json.dumps(described, indent=2) if as_json else _render_text(described))


@main_group.command()
@settings_options
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.argument("cmd", nargs=-1, type=click.UNPROCESSED, metavar="[--] [CMD]...")
@click.pass_context
def check(ctx: click.Context, /, cmd: tuple[str, ...], as_json: bool, **options: Any) -> None:
    """Validate the configuration and probe every dependency once; run nothing.

    Exit 0 when all are ready, 69 when one is not, 78 when the configuration is wrong.
    """
    from entrypoint.runtime import waiting

    settings = _settings(ctx, options, cmd or ("true",))
    plan = _plan(settings)
    results = waiting.check(plan.dependencies, probe_timeout=plan.probe_timeout)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "mode": plan.mode,
                    "ok": all(r.ok for r in results),
                    "dependencies": [r.to_json() for r in results],
                    "warnings": list(plan.warnings),
                },
                indent=2,
            )
        )
    else:
        click.echo(f"configuration ok: mode {plan.mode} ({plan.run})")
        for warning in plan.warnings:
            click.echo(f"warning: {warning}")
        click.echo(waiting.render_table(results))
    sys.exit(ExitCode.OK if all(r.ok for r in results) else ExitCode.UNAVAILABLE)


@main_group.command()
@settings_options
@click.pass_context
def health(ctx: click.Context, /, **options: Any) -> None:
    """Exit 0 when healthy, 1 otherwise, with one line saying why (for HEALTHCHECK)."""
    from entrypoint.runtime.state import check_health

    try:  # the image's CMD is not known here: a placeholder stands for it
        healthy, why = check_health(_settings(ctx, options, ("true",)))
    except EntrypointError as exc:
        healthy, why = False, f"configuration invalid: {exc.message}"
    click.echo(why)
    sys.exit(0 if healthy else 1)


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
@click.argument("cmd", nargs=-1, required=True, type=click.UNPROCESSED, metavar="[--] CMD...")
def handoff(
    service: str, compose_files: tuple[str, ...], project_name: str | None, cmd: tuple[str, ...]
) -> None:
    """Pause a compose service while a dev command runs, then resume it.

    The service is stopped only if it is running, and started again on any end
    of CMD (exit, error, Ctrl+C, TERM). Without docker, CMD runs anyway.
    """
    from entrypoint.runtime import log
    from entrypoint.runtime.handoff import run_handoff

    log.configure(
        os.environ.get("ENTRYPOINT_LOG_LEVEL", "info").strip().lower(),
        os.environ.get("ENTRYPOINT_LOG_FORMAT", "auto").strip().lower(),
        secret_values(os.environ),
    )
    sys.exit(
        run_handoff(
            list(cmd), service=service, compose_files=compose_files, project_name=project_name
        )
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; click's usage errors exit 64 (the contract), not click's 2."""
    try:
        main_group.main(
            args=list(argv) if argv is not None else None,
            prog_name="entrypoint",
            standalone_mode=False,
        )
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.UsageError as exc:
        hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx else ""
        click.echo(f"entrypoint: error: {exc.format_message()}{hint}", err=True)
        return ExitCode.USAGE
    except click.ClickException as exc:
        click.echo(f"entrypoint: error: {exc.format_message()}", err=True)
        return ExitCode.USAGE
    except click.Abort:
        return 128 + 2
    except EntrypointError as exc:
        click.echo(f"entrypoint: error: {exc.message}", err=True)
        return exc.exit_code
    return 0
