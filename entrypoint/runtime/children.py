"""Children: spawn one in its own process group, signal it, reap everything.

This module and `supervisor` are the only ones that create or wait for processes.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from typing import TYPE_CHECKING

from entrypoint import sigstate
from entrypoint.errors import CommandError, ExitCode

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

PR_SET_CHILD_SUBREAPER = 36
# Reset in the child so that it starts as if the entrypoint were not there:
# Python ignores SIGPIPE and SIGXFSZ, and exec keeps ignored signals ignored.
_DEFAULTED = frozenset(sigstate.DEFAULTED)


def spawn(argv: Sequence[str]) -> int:
    """Start `argv` (PATH searched) in a new process group; return its pid.

    It inherits stdin/stdout/stderr, the environment and the working directory,
    with an empty signal mask and default dispositions. A command that cannot be
    started raises CommandError with exit code 127 (not found) or 126.
    """
    try:
        return os.posix_spawnp(
            argv[0],
            list(argv),
            os.environ,
            setpgroup=0,
            setsigmask=(),
            setsigdef=_DEFAULTED,
        )
    except FileNotFoundError:
        raise CommandError(f"command not found: {argv[0]}", exit_code=ExitCode.NOT_FOUND) from None
    except PermissionError:
        raise CommandError(
            f"command is not executable: {argv[0]}", exit_code=ExitCode.NOT_EXECUTABLE
        ) from None
    except OSError as exc:
        raise CommandError(
            f"cannot execute {argv[0]}: {exc.strerror}", exit_code=ExitCode.NOT_EXECUTABLE
        ) from None


def exit_code(status: int) -> int:
    """A wait status as a shell reports it: the exit status, or 128+n for signal n."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def reap() -> Iterator[tuple[int, int]]:
    """Every child that has ended, as (pid, exit code), without blocking.

    As PID 1 or a subreaper, the entrypoint also inherits orphans it never
    started: they are reaped here too, or they would stay zombies forever.
    Signals coalesce (one SIGCHLD for many exits), so loop until nothing is left.
    """
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        yield pid, exit_code(status)


def send(pid: int, signum: int, *, group: bool) -> bool:
    """Send `signum` to the child (or its process group); False when it is already gone."""
    try:
        if group:
            os.killpg(pid, signum)
        else:
            os.kill(pid, signum)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    # Let the child run its handler before this process goes on (to log, say):
    # on a busy machine it may be waiting for this very CPU.
    os.sched_yield()
    return True


def become_subreaper() -> bool:
    """Adopt orphaned descendants (PR_SET_CHILD_SUBREAPER); PID 1 already does."""
    if os.getpid() == 1:
        return True
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    return False
