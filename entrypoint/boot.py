"""The console script's first code: early signal handlers, then the shortest way in.

Only builtin modules are imported before the handlers are installed, so that a
`docker stop` right after `docker run` is never dropped (the kernel discards a
signal to PID 1 without a handler). Then `run [--] CMD...` without options, and
`health [--ready]`, go straight to their code: click is imported only when
options or `--help` need parsing, structlog only when something is supervised,
so that web mode's exec stays within 1.5x of a bare interpreter start, every
setting validated (docs/performance.md).
"""

from __future__ import annotations

import os
import sys

from entrypoint import sigstate


def plain_run(args: list[str]) -> tuple[str, ...] | None:
    """The CMD of `run -- CMD...` or `run CMD...` (no option before CMD), else None."""
    if len(args) < 2 or args[0] != "run":
        return None
    if args[1] == "--":
        return tuple(args[2:])
    if args[1].startswith("-"):
        return None
    return tuple(args[1:])


def main(argv: list[str] | None = None) -> int:
    sigstate.install()
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        return _dispatch(args)
    except BaseException as exc:
        if isinstance(exc, SystemExit | KeyboardInterrupt):
            raise
        from entrypoint.cli.render import error_line

        line, code = error_line(exc, os.environ)
        from entrypoint import logline

        logline.sink(sys.stderr).write(line)
        return code
    finally:
        # Nothing is left to forward, and the interpreter's finalization puts
        # the default handlers back: a TERM then (a second `docker stop`, a
        # storm) would end the process by that signal instead of its status.
        sigstate.hold()


def _dispatch(args: list[str]) -> int:
    command = plain_run(args)
    if command is not None:
        from entrypoint.cli.run import run_command

        return run_command(command)
    if args in (["health"], ["health", "--ready"]):
        from entrypoint.cli.health import health_command

        return health_command(ready=len(args) == 2)
    from entrypoint.cli.main import main as cli_main

    return cli_main(args)
