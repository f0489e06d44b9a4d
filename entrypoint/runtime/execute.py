"""Web mode's end: replace this process with the command (same PID, nothing left behind).

Builtins only: this is the last step of web mode's start.
"""

from __future__ import annotations

import os
import sys

from entrypoint import sigstate
from entrypoint.errors import command_error, signal_status
from entrypoint.runtime.signals import SignalInbox


def exec_command(argv: tuple[str, ...]) -> int:
    """Replace this process with `argv`; return only when a stop came first (128+n).

    A stop signal that arrived before the exec means the container is being
    stopped: nothing is started. A command that cannot be executed raises
    CommandError (127 not found, 126 otherwise).
    """
    inbox = SignalInbox()
    inbox.take()
    stop = inbox.stop_signal
    inbox.close()
    if stop is not None:
        return signal_status(stop)
    sigstate.restore_defaults()
    sys.stderr.flush()
    sys.stdout.flush()
    try:
        os.execvp(argv[0], list(argv))
    except OSError as exc:
        raise command_error(argv[0], exc) from None
