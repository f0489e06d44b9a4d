"""The signals received since the first line of the program ran: the ground floor.

Builtin modules only (`_signal`): the console script imports this before
anything else, so that a `docker stop` right after `docker run` finds a handler
installed (the kernel discards a signal to PID 1 that has none). The handler
only records; `SignalInbox` (runtime/signals.py) is the one reader of what it
recorded, and the one owner of "a stop was requested".
"""

from __future__ import annotations

import _signal

FORWARDED_NAMES = (
    "TERM", "INT", "QUIT", "HUP", "USR1", "USR2", "WINCH", "TTIN", "TTOU", "TSTP", "CONT", "ALRM",
)  # fmt: skip
FORWARDED: tuple[int, ...] = tuple(getattr(_signal, "SIG" + name) for name in FORWARDED_NAMES)
# The signals that start a stop; every other forwarded one is only passed on.
STOP_SIGNALS: frozenset[int] = frozenset((_signal.SIGTERM, _signal.SIGINT, _signal.SIGQUIT))
# Reset to their default in a child and before an exec: Python ignores SIGPIPE
# and SIGXFSZ, and exec keeps an ignored signal ignored.
DEFAULTED: tuple[int, ...] = (*FORWARDED, _signal.SIGCHLD, _signal.SIGPIPE, _signal.SIGXFSZ)

# Aliases that `signal.Signals` does not use as a name.
_ALIASES = frozenset(("SIGIOT", "SIGCLD", "SIGPOLL"))
NAMES: dict[int, str] = {
    getattr(_signal, name): name
    for name in dir(_signal)
    if name.startswith("SIG") and not name.startswith("SIG_") and name not in _ALIASES
}

# Signals received and not yet taken, in order. The handler only appends
# (atomic under the GIL); `take` removes what it returns, and nothing else.
_pending: list[int] = []


def record(signum: int, _frame: object) -> None:
    _pending.append(signum)


def install() -> None:
    """Record every forwarded signal from now on (SIGCHLD is the supervisor's to add)."""
    for signum in FORWARDED:
        _signal.signal(signum, record)


def take() -> list[int]:
    """The signals recorded since the last call, oldest first. For SignalInbox only."""
    taken = _pending[:]
    del _pending[: len(taken)]
    return taken


def pending() -> bool:
    """Whether a signal was recorded and not yet taken."""
    return bool(_pending)


def put_back(signals: list[int]) -> None:
    """Leave `signals` for the next `take` (signals a phase held blocked, then released)."""
    _pending[:0] = signals


def restore_defaults() -> None:
    """Undo everything Python and the entrypoint changed, before an exec.

    exec resets caught signals to their default but keeps SIG_IGN and the mask:
    an ignored or blocked signal would stay so in the program that follows.
    """
    _signal.set_wakeup_fd(-1)
    for signum in DEFAULTED:
        _signal.signal(signum, _signal.SIG_DFL)
    _signal.pthread_sigmask(_signal.SIG_SETMASK, [])


def hold() -> None:
    """Block every forwarded signal from now on: for the last steps before the exit."""
    _signal.pthread_sigmask(_signal.SIG_BLOCK, FORWARDED)


def signal_name(signum: int) -> str:
    """`SIGTERM` for 15; the number itself for a signal without a name."""
    return NAMES.get(signum, str(signum))
