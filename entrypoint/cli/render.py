"""What the commands print: the one error line, and `explain`, `check` and `status`.

Everything shown to a person passes through here, escaped to one line per
value and redacted. Text and JSON views are built from the same plain values.
"""

from __future__ import annotations

import sys

from entrypoint import logline
from entrypoint.errors import EntrypointError, ExitCode, one_line

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from typing import Any

    from entrypoint.plan.modes import Plan
    from entrypoint.plan.settings import Settings
    from entrypoint.runtime.waiting import CheckResult


def secrets_of(env: Mapping[str, str], extra: Iterable[str] = ()) -> list[str]:
    from entrypoint.plan.redact import secret_values

    return [*secret_values(env), *extra]


def error_line(
    exc: BaseException, env: Mapping[str, str], extra_secrets: Iterable[str] = ()
) -> tuple[str, int]:
    """The one way out: `entrypoint: error: ...` (one line, redacted) and the exit code."""
    from entrypoint.plan.redact import redact_text

    if isinstance(exc, EntrypointError):
        message, code = exc.message, exc.exit_code
    else:
        message, code = f"internal error: {type(exc).__name__}: {exc}", ExitCode.SOFTWARE
    text = one_line(redact_text(message, secrets_of(env, extra_secrets)))
    return f"entrypoint: error: {text}", code


def report(exc: BaseException, env: Mapping[str, str], extra_secrets: Iterable[str] = ()) -> int:
    """Print `exc` as its one line on stderr; return its exit code."""
    line, code = error_line(exc, env, extra_secrets)
    logline.sink(sys.stderr).write(line)
    return code


def out(text: str) -> None:
    """Print to stdout; a closed stdout loses the text, never the exit status."""
    for line in text.splitlines() or [""]:
        logline.sink(sys.stdout).write(line)


# -- explain ------------------------------------------------------------------


def describe(plan: Plan, settings: Settings, secrets: Iterable[str]) -> dict[str, Any]:
    """The plan as plain values, secrets redacted: what `explain` shows (text or JSON)."""
    from entrypoint.plan.modes import SupervisePlan
    from entrypoint.plan.redact import redact_text
    from entrypoint.sigstate import signal_name

    hidden = list(secrets)
    described: dict[str, Any] = {
        "mode": plan.mode,
        "run": str(plan.run),
        "command": [redact_text(word, hidden) for word in plan.argv],
        "command_source": plan.command_origin,
        "dependencies": [
            {"url": dep.display, "source": dep.source, "depth": str(dep.depth)}
            for dep in plan.dependencies
        ],
        "warnings": [notice.text for notice in plan.notices],
        "problems": [redact_text(problem, hidden) for problem in plan.problems],
    }
    if not isinstance(plan, SupervisePlan):
        described["health_url"] = plan.health.display if plan.health else None
        return described
    restart, stop, liveness = plan.restart, plan.stop, plan.liveness
    described.update(
        wait={
            "before_start": plan.wait and bool(plan.dependencies),
            "timeout_s": plan.wait_timeout,
            "probe_timeout_s": plan.probe_timeout,
        },
        restart={
            "policy": str(restart.restart),
            "min_uptime_s": restart.min_uptime,
            "backoff_initial_s": restart.backoff_initial,
            "backoff_max_s": restart.backoff_max,
            "reset_after_s": restart.reset_after,
            "max_restarts": restart.max_restarts,
            "restart_window_s": restart.restart_window,
        },
        stop={
            "signal": signal_name(stop.signal) if stop.signal else "as received",
            "timeout_s": stop.timeout,
            "to": "process group" if stop.group else "child",
        },
        lease=None
        if plan.lease is None
        else {
            "url": plan.lease.store.display,
            "key": plan.lease.key,
            "ttl_s": plan.lease.ttl,
            "source": plan.lease.origin,
        },
        leader_env=plan.leader_env,
        handoff=None
        if plan.handoff is None
        else {"url": plan.handoff.store.display, "key": plan.handoff.key},
        liveness={
            "notify": liveness.notify,
            "heartbeat_file": liveness.heartbeat_file,
            "watchdog_timeout_s": liveness.watchdog_timeout,
            "ready_timeout_s": liveness.ready_timeout,
            "heartbeat_max_age_s": liveness.heartbeat_max_age,
        },
        state_file=plan.state_file,
    )
    return described


def explain_text(described: Mapping[str, Any]) -> str:
    import shlex

    command = shlex.join(described["command"]) if described["command"] else "(none)"
    lines = [
        f"mode          {described['mode']} ({described['run']})",
        f"command       {command}   [from {described['command_source']}]",
    ]
    if described["run"] == "supervise":
        restart, stop, wait = described["restart"], described["stop"], described["wait"]
        limit = (
            f"give up after {restart['max_restarts']} restarts in {restart['restart_window_s']:g} s"
            if restart["max_restarts"]
            else "no restart limit"
        )
        backoff = (
            f"{restart['backoff_initial_s']:g} s doubling to {restart['backoff_max_s']:g} s, "
            f"reset after {restart['reset_after_s']:g} s up"
        )
        lines += [
            (
                f"restart       {restart['policy']}: at once after a clean exit past "
                f"{restart['min_uptime_s']:g} s; else backoff {backoff}; {limit}"
            ),
            (
                f"stop          signal {stop['signal']} to the {stop['to']}, "
                f"SIGKILL after {stop['timeout_s']:g} s"
            ),
            f"state file    {described['state_file']}",
            f"wait          up to {wait['timeout_s']:g} s before the first start"
            if wait["before_start"]
            else "wait          nothing to wait for",
        ]
        liveness = described["liveness"]
        watched = [
            name
            for name, on in (
                ("NOTIFY_SOCKET", liveness["notify"]),
                (f"heartbeat file {liveness['heartbeat_file']}", liveness["heartbeat_file"]),
                (f"watchdog {liveness['watchdog_timeout_s']:g} s", liveness["watchdog_timeout_s"]),
                (f"ready within {liveness['ready_timeout_s']:g} s", liveness["ready_timeout_s"]),
            )
            if on
        ]
        if watched:
            lines.append(f"liveness      {', '.join(watched)}")
    for dep in described["dependencies"]:
        lines.append(f"dependency    {dep['url']}  [from {dep['source']}, depth {dep['depth']}]")
    lease = described.get("lease")
    if lease:
        lines.append(
            f"lease         {lease['key']} at {lease['url']} [from {lease['source']}], "
            f"ttl {lease['ttl_s']:g} s"
        )
    if described.get("leader_env"):
        lines.append(f"leader flag   {described['leader_env']}=true on the lease holder's child")
    if described.get("handoff"):
        handoff = described["handoff"]
        lines.append(f"handoff       yields while {handoff['key']} is held at {handoff['url']}")
    if described.get("health_url"):
        lines.append(f"health        {described['health_url']}")
    lines += [f"warning       {one_line(warning)}" for warning in described["warnings"]]
    lines += [f"problem       {one_line(problem)}" for problem in described["problems"]]
    return "\n".join(lines)


# -- check --------------------------------------------------------------------


def check_json(result: CheckResult) -> dict[str, object]:
    return {
        "dependency": result.dependency,
        "source": result.source,
        "scheme": result.scheme,
        "depth": str(result.depth),
        "ok": result.ok,
        "latency_ms": result.latency_ms,
        "detail": result.detail if result.ok else None,
        "reason": None if result.ok else result.detail,
        "permanent": result.permanent,
    }


def check_table(results: Sequence[CheckResult]) -> str:
    """The human table of `entrypoint check`."""
    if not results:
        return "no dependency to check"
    header = ("DEPENDENCY", "SOURCE", "DEPTH", "STATUS", "LATENCY", "DETAIL")
    rows = [header]
    for r in results:
        status = "ok" if r.ok else ("failed, permanent" if r.permanent else "failed")
        rows.append(
            (
                r.dependency,
                r.source,
                str(r.depth),
                status,
                f"{r.latency_ms:.0f} ms",
                one_line(r.detail),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = []
    for row in rows:
        cells = [
            cell.rjust(width) if i == 4 else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=False))
        ]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)
