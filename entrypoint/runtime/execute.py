"""Web mode's end: replace this process with the command (same PID, nothing left behind).

Builtins only: this is the last step of web mode's start.
"""

from __future__ import annotations

import os
import sys

from entrypoint import sigstate
from entrypoint.errors import command_error, signal_status
from entrypoint.runtime.signals import SignalInbox

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn


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
        execvp(argv[0], list(argv))
    except OSError as exc:
        raise command_error(argv[0], exc) from None


def execvp(file: str, argv: list[str]) -> NoReturn:
    """os.execvp, by its rules, without os.get_exec_path (which imports warnings).

    A name with a slash is executed as it is; otherwise each PATH directory in
    turn (os.defpath when PATH is unset). When none works, the first error
    other than "not found" is raised (EACCES, ENOEXEC...), else the last one.
    """
    if os.path.dirname(file):
        os.execv(file, argv)
    path = os.environ.get("PATH")
    first: OSError | None = None
    last: OSError = FileNotFoundError(2, "No such file or directory", file)
    for directory in (os.defpath if path is None else path).split(os.pathsep):
        try:
            os.execv(os.path.join(directory, file), argv)
        except (FileNotFoundError, NotADirectoryError) as exc:
            last = exc
        except OSError as exc:
            last = exc
            first = first or exc
    raise first or last
