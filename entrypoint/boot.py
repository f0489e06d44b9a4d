"""The console script's first code: early signal handlers and web mode's fast path.

Only builtin modules are imported here (os, sys, time, _signal): a web container
whose configuration needs no validation pays for nothing else before the exec,
and a worker container has its signal handlers installed before any heavy import,
so that a `docker stop` right after `docker run` is never dropped by the kernel
(a signal to PID 1 without a handler is discarded).
"""

from __future__ import annotations

import _signal
import os
import sys
import time

FORWARDED_NAMES = (
    "TERM", "INT", "QUIT", "HUP", "USR1", "USR2", "WINCH", "TTIN", "TTOU", "TSTP", "CONT", "ALRM",
)  # fmt: skip
FORWARDED: tuple[int, ...] = tuple(getattr(_signal, "SIG" + name) for name in FORWARDED_NAMES)
STOP_SIGNALS: tuple[int, ...] = (_signal.SIGTERM, _signal.SIGINT, _signal.SIGQUIT)

# Signals received before the supervisor exists, in order. The handler only
# appends (atomic under the GIL); the supervisor drains this same list later.
PENDING: list[int] = []

# Variables that need full validation: when one is set, web mode takes the slow
# path through settings (which reports a bad value with exit 78 in every mode).
_VALIDATED = ("QUEUE_URL", "QUEUE_CONNECTION", "WEB_CMD")
# ENTRYPOINT_HEALTH_URL is only read by `health`, which reports a bad value itself.
_FAST_OK = ("ENTRYPOINT_LOG_FORMAT", "ENTRYPOINT_LOG_LEVEL", "ENTRYPOINT_HEALTH_URL")
_LOG_LEVELS = {"debug": 10, "info": 20, "warning": 30, "warn": 30, "error": 40, "critical": 50}


def record_signal(signum: int, _frame: object) -> None:
    PENDING.append(signum)


def install_early_handlers() -> None:
    for signum in FORWARDED:
        _signal.signal(signum, record_signal)


def restore_default_signals() -> None:
    """Undo everything Python and the entrypoint changed, before exec or in a child.

    exec resets caught signals to their default but keeps SIG_IGN and the mask:
    Python ignores SIGPIPE and SIGXFSZ, and a blocked signal would stay blocked.
    """
    _signal.set_wakeup_fd(-1)
    for signum in (*FORWARDED, _signal.SIGCHLD, _signal.SIGPIPE, _signal.SIGXFSZ):
        _signal.signal(signum, _signal.SIG_DFL)
    _signal.pthread_sigmask(_signal.SIG_SETMASK, [])


def stop_received() -> int | None:
    """The first stop signal recorded so far, if any."""
    for signum in PENDING:
        if signum in STOP_SIGNALS:
            return signum
    return None


def exec_command(argv: list[str]) -> int:
    """Replace this process with `argv` (same PID); return an exit code only on failure.

    A stop signal that arrived before the exec means the container is being
    stopped: nothing is started, and the status says which signal it was.
    """
    stop = stop_received()
    if stop is not None:
        return 128 + stop
    restore_default_signals()
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
    install_early_handlers()
    args = sys.argv[1:] if argv is None else argv
    if args == ["health"]:
        from entrypoint.health import main as health_main

        return health_main()
    command = fast_web_command(args, os.environ)
    if command is not None:
        log_mode_selected(command, os.environ)
        return exec_command(command)
    try:
        from entrypoint.cli import main as cli_main

        return cli_main(args)
    except Exception as exc:  # noqa: BLE001 - the contract's promise: one line, never a traceback
        from entrypoint.redact import redact_text, secret_values

        text = redact_text(f"{type(exc).__name__}: {exc}", secret_values(os.environ))
        _error(f"internal error: {text}")
        return 70  # EX_SOFTWARE
