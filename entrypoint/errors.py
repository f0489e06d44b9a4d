"""Error types that carry the entrypoint's own exit code (see the contract's table)."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    USAGE = 64
    UNAVAILABLE = 69
    TEMPFAIL = 75  # busy: another holds what was asked for; try again later
    CONFIG = 78
    NOT_EXECUTABLE = 126
    NOT_FOUND = 127


class EntrypointError(Exception):
    """An error that ends the entrypoint with `exit_code` and one line on stderr.

    The message must already be redacted: it is printed as is.
    """

    exit_code: int = 1

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
