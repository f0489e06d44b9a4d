"""Children: spawn one in its own process group, signal it, reap everything.

This module and `supervisor` are the only ones that create or wait for processes.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
from typing import TYPE_CHECKING

from entrypoint import sigstate
from entrypoint.errors import command_error, signal_status

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

PR_SET_CHILD_SUBREAPER = 36
# Reset in the child so that it starts as if the entrypoint were not there:
# Python ignores SIGPIPE and SIGXFSZ, and exec keeps ignored signals ignored.
_DEFAULTED = frozenset(sigstate.DEFAULTED)
_JOB_CONTROL = (signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGCONT)
_FOREGROUND_DEFAULTED = _DEFAULTED | frozenset(_JOB_CONTROL)


def spawn(
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    *,
    foreground: bool = False,
    own_pid: str | None = None,
) -> int:
    """Start `argv` (PATH searched) in a new process group; return its pid.

    It inherits stdin/stdout/stderr, the environment (or `env`) and the working
    directory, with an empty signal mask and default dispositions. A
    `foreground` command (a developer's, under `handoff`) stays in the
    entrypoint's group instead, so that it keeps the terminal and job control
    applies to both. A command that cannot be started raises CommandError
    (127 not found, 126 otherwise). With `own_pid`, the child finds its own
    pid in that variable (WATCHDOG_PID, as systemd sets it): see `_fork_exec`.
    """
    try:
        if own_pid is not None:
            return _fork_exec(argv, os.environ if env is None else env, own_pid)
        if foreground:
            return os.posix_spawnp(
                argv[0], list(argv), os.environ, setsigmask=(), setsigdef=_FOREGROUND_DEFAULTED
            )
        return os.posix_spawnp(
            argv[0],
            list(argv),
            os.environ if env is None else env,
            setpgroup=0,
            setsigmask=(),
            setsigdef=_DEFAULTED,
        )
    except OSError as exc:
        raise command_error(argv[0], exc) from None


def _fork_exec(argv: Sequence[str], env: Mapping[str, str], variable: str) -> int:
    """fork, then exec in the child with `variable` set to the child's own pid.

    posix_spawn cannot give a child its own pid before it runs; libsystemd's
    sd_watchdog_enabled() ignores a WATCHDOG_PID that is not the reader's own,
    and systemd itself sets it in the forked child. Signals are blocked around
    the fork so that no handler of ours runs in the child; the child resets
    them as posix_spawn would. A failed exec reports its errno through a
    close-on-exec pipe, so that 127/126 work as with posix_spawn.
    """
    every = signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP}
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, every)
    pid = os.fork()
    if pid == 0:  # the child: only async-signal-safe-ish work until the exec
        try:
            os.close(read_end)
            signal.set_wakeup_fd(-1)
            for signum in _DEFAULTED:
                signal.signal(signum, signal.SIG_DFL)
            os.setpgid(0, 0)
            child_env = dict(env)
            child_env[variable] = str(os.getpid())
            signal.pthread_sigmask(signal.SIG_SETMASK, ())
            os.execvpe(argv[0], list(argv), child_env)
        except OSError as exc:
            os.write(write_end, str(exc.errno or 0).encode())
        finally:
            os._exit(127)
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        failure = pipe.read()
    if failure:
        os.waitpid(pid, 0)
        number = int(failure)
        raise OSError(number, os.strerror(number))
    return pid


def exit_code(status: int) -> int:
    """A wait status as a shell reports it: the exit status, or 128+n for signal n."""
    code = os.waitstatus_to_exitcode(status)
    return signal_status(-code) if code < 0 else code


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


def _stat_fields(pid: str) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name; None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            text = handle.read().decode("ascii", "replace")
    except OSError:
        return None
    return text.rsplit(")", 1)[-1].split()


def descendants(parent: int) -> list[int]:
    """The living (not zombie) processes whose parent is `parent`: its children and orphans.

    As PID 1 or a subreaper, every process that left the child's tree (a double
    fork, setsid) is re-parented to the entrypoint: this is how they are found.
    """
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(entry)
            if fields and len(fields) > 1 and fields[0] != "Z" and int(fields[1]) == parent:
                found.append(int(entry))
    return found


def group_alive(pgid: int) -> bool:
    """Whether any process (zombies aside) is left in process group `pgid`."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(entry)
            if fields and len(fields) > 2 and fields[0] != "Z" and int(fields[2]) == pgid:
                return True
    return False
