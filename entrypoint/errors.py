"""Exit codes, the errors that carry them, and how a value is shown in a message.

The ground floor: builtins only, nothing of the package but `records`. Every
message is one line: values are shown with `quoted` (repr-like), texts from
servers with `one_line`; the one renderer of an error (cli/render.py) escapes
and redacts what reaches it once more.
"""

from __future__ import annotations

from entrypoint.records import IntEnum


class ExitCode(IntEnum):
    """The entrypoint's own statuses (the child's status passes through as is)."""

    OK = 0
    FAILURE = 1  # `health`: not healthy
    USAGE = 64  # EX_USAGE: unknown MODE, bad flag
    UNAVAILABLE = 69  # EX_UNAVAILABLE: a dependency or the lease store
    SOFTWARE = 70  # EX_SOFTWARE: a bug of the entrypoint
    TEMPFAIL = 75  # EX_TEMPFAIL: another handoff holds the lease
    CONFIG = 78  # EX_CONFIG
    NOT_EXECUTABLE = 126
    NOT_FOUND = 127


SIGNAL_BASE = 128


def signal_status(signum: int) -> int:
    """The status a shell reports for a process that died by signal `signum`."""
    return SIGNAL_BASE + signum


# Characters that would end a line, or make one line read as two, on a terminal.
_BREAKS = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\x0b": "\\x0b", "\x0c": "\\x0c"}


def one_line(text: str) -> str:
    """`text` with every control character escaped (`\\n`, `\\x1b`, `\\u2028`), unquoted."""
    if text.isprintable():
        return text
    out = []
    for char in text:
        if char.isprintable():
            out.append(char)
        elif char in _BREAKS:
            out.append(_BREAKS[char])
        elif ord(char) < 0x100:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(f"\\u{ord(char):04x}" if ord(char) < 0x10000 else f"\\U{ord(char):08x}")
    return "".join(out)


def quoted(text: str | None) -> str:
    """A value as a message shows it: quoted and escaped like repr, always one line."""
    return repr(text) if text is not None else "(none)"


class EntrypointError(Exception):
    """An error that ends the entrypoint with `exit_code` and one line on stderr."""

    exit_code: int = ExitCode.FAILURE

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code

    @property
    def message(self) -> str:
        return str(self.args[0])


class UsageError(EntrypointError):
    exit_code = ExitCode.USAGE


class ConfigError(EntrypointError):
    """One or more configuration problems; `problems` lists each of them."""

    exit_code = ExitCode.CONFIG

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


class UnavailableError(EntrypointError):
    exit_code = ExitCode.UNAVAILABLE


class CommandError(EntrypointError):
    """The command cannot be run: 127 when not found, 126 when not executable."""


def command_error(program: str, exc: OSError) -> CommandError:
    """The one mapping of a failed exec or spawn to 127 (not found) or 126 (any other)."""
    name = one_line(program)
    if isinstance(exc, FileNotFoundError):
        return CommandError(f"command not found: {name}", exit_code=ExitCode.NOT_FOUND)
    if isinstance(exc, PermissionError):
        return CommandError(f"command is not executable: {name}", exit_code=ExitCode.NOT_EXECUTABLE)
    reason = exc.strerror or type(exc).__name__
    return CommandError(f"cannot execute {name}: {reason}", exit_code=ExitCode.NOT_EXECUTABLE)
