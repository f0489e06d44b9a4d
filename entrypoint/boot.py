"""The console script's first code: early signal handlers and web mode's fast path.

Only builtin modules are imported here (os, sys, time, _signal): a web container
whose configuration needs no validation pays for nothing else before the exec,
and a worker container has its signal handlers installed before any heavy import,
so that a `docker stop` right after `docker run` is never dropped by the kernel
(a signal to PID 1 without a handler is discarded).
"""

from __future__ import annotations

import os
import sys
import time

from entrypoint import sigstate

# Variables that need full validation: when one is set, web mode takes the slow
# path through settings (which reports a bad value with exit 78 in every mode).
_VALIDATED = ("QUEUE_URL", "QUEUE_CONNECTION", "WEB_CMD")
# ENTRYPOINT_HEALTH_URL is only read by `health`, which reports a bad value itself.
_FAST_OK = ("ENTRYPOINT_LOG_FORMAT", "ENTRYPOINT_LOG_LEVEL", "ENTRYPOINT_HEALTH_URL")
_LOG_LEVELS = {"debug": 10, "info": 20, "warning": 30, "warn": 30, "error": 40, "critical": 50}


def stop_received() -> int | None:
    """The first stop signal recorded so far, if any (the exec path's one look)."""
    taken = sigstate.take()
    sigstate.put_back(taken)
    return next((s for s in taken if s in sigstate.STOP_SIGNALS), None)


def exec_command(argv: list[str]) -> int:
    """Replace this process with `argv` (same PID); return an exit code only on failure.

    A stop signal that arrived before the exec means the container is being
    stopped: nothing is started, and the status says which signal it was.
    """
    stop = stop_received()
    if stop is not None:
        return 128 + stop
    sigstate.restore_defaults()
    try:
        sys.stderr.flush()
        sys.stdout.flush()
        os.execvp(argv[0], argv)
    except FileNotFoundError:
        _error(f"command not found: {argv[0]}")
        return 127
    except PermissionError:
        _error(f"command is not executable: {argv[0]}")
        return 126
    except OSError as exc:
        _error(f"cannot execute {argv[0]}: {exc.strerror}")
        return 126


def _error(message: str) -> None:
    sys.stderr.write(f"entrypoint: error: {message}\n")
    sys.stderr.flush()


def fast_web_command(argv: list[str], env: dict[str, str] | os._Environ[str]) -> list[str] | None:
    """The command to exec when nothing but MODE and CMD need a look, else None.

    None sends the call down the full path (click, settings, structlog), which
    handles every other case, including every error message.
    """
    if len(argv) < 2 or argv[0] != "run":
        return None
    command = argv[2:] if argv[1] == "--" else argv[1:]
    if not command or (argv[1] != "--" and argv[1].startswith("-")):
        return None
    if env.get("MODE", "").strip().lower() not in ("", "web"):
        return None
    for name in env:
        if name in _VALIDATED or (name.startswith("ENTRYPOINT_") and name not in _FAST_OK):
            return None
    if env.get("ENTRYPOINT_LOG_FORMAT", "auto") not in ("auto", "json", "console"):
        return None
    if env.get("ENTRYPOINT_LOG_LEVEL", "info").strip().lower() not in _LOG_LEVELS:
        return None
    return command


def _json_string(text: str) -> str:
    out = ['"']
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif char < " " or char > "~":
            out.append(f"\\u{ord(char):04x}" if ord(char) < 0x10000 else char)
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def log_mode_selected(command: list[str], env: dict[str, str] | os._Environ[str]) -> None:
    """The `mode_selected` event, rendered as structlog would, without structlog."""
    if _LOG_LEVELS[env.get("ENTRYPOINT_LOG_LEVEL", "info").strip().lower()] > 20:
        return
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"
    fmt = env.get("ENTRYPOINT_LOG_FORMAT", "auto")
    if fmt == "console" or (fmt == "auto" and sys.stderr.isatty()):
        event = "mode_selected".ljust(30)
        line = f"{stamp} [info     ] {event} action=exec command={command[0]} mode=web\n"
    else:
        line = (
            f'{{"mode": "web", "action": "exec", "command": {_json_string(command[0])}, '
            f'"event": "mode_selected", "level": "info", "timestamp": "{stamp}"}}\n'
        )
    sys.stderr.write(line)


def main(argv: list[str] | None = None) -> int:
    sigstate.install()
    args = sys.argv[1:] if argv is None else argv
    if args == ["health"]:
        from entrypoint.runtime.state import main as health_main

        return health_main()
    command = fast_web_command(args, os.environ)
    if command is not None:
        log_mode_selected(command, os.environ)
        return exec_command(command)
    try:
        from entrypoint.cli.main import main as cli_main

        return cli_main(args)
    except Exception as exc:  # noqa: BLE001 - the contract's promise: one line, never a traceback
        from entrypoint.plan.redact import redact_text, secret_values

        text = redact_text(f"{type(exc).__name__}: {exc}", secret_values(os.environ))
        _error(f"internal error: {text}")
        return 70  # EX_SOFTWARE
