"""SQLite: the file starts with the SQLite header, or may be created in its directory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from entrypoint.probes._net import ProbeError, preview

if TYPE_CHECKING:
    from entrypoint.plan.urls import Dependency
    from entrypoint.probes._net import Attempt

HEADER = b"SQLite format 3\x00"


def probe(dep: Dependency, attempt: Attempt) -> str:
    """Relative paths are relative to the working directory, as for the application."""
    attempt.step = "reading the file"
    path = Path(dep.database or "")
    try:
        with path.open("rb") as file:
            header = file.read(len(HEADER))
    except FileNotFoundError:
        return _absent(path)
    except IsADirectoryError:
        raise ProbeError(f"{path} is a directory, not a SQLite file", permanent=True) from None
    except PermissionError:
        raise ProbeError(f"{path} is not readable", permanent=True) from None
    if not header:
        return f"{path}: empty file (a new SQLite database)"
    if header != HEADER:
        raise ProbeError(
            f"{path} is not a SQLite database (it starts with {preview(header)})", permanent=True
        )
    access = "" if os.access(path, os.W_OK) else " (read-only)"
    return f"{path}: SQLite database{access}"


def _absent(path: Path) -> str:
    directory = path.parent
    if not directory.is_dir():
        # A volume not mounted yet, or a directory an init step creates: wait.
        raise ProbeError(f"{path} does not exist, nor does its directory")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ProbeError(f"{path} does not exist and its directory is not writable", permanent=True)
    return f"{path} does not exist yet; its directory is writable (it will be created)"
