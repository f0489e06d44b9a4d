"""What the settings are read from: the environment, the X_FILE secrets, the config file.

The one place that reads them (from the OS); `plan.settings.load` gets the
result as a value. Builtins only: web mode reads its inputs here too.
"""

from __future__ import annotations

import os
import stat

from entrypoint.errors import one_line
from entrypoint.plan.settings import SECRET_FILE_VARIABLES, Inputs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

CONFIG_LIMIT = 1 << 20  # a TOML file of settings is a few KB; /dev/zero is not one
SECRET_LIMIT = 1 << 16


class Unreadable(Exception):
    """A file that cannot be used; the message says why, never its content."""


def read_limited(path: str, limit: int) -> bytes:
    """The bytes of the regular file at `path` (links followed), at most `limit` of them."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise Unreadable(_reason(exc)) from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise Unreadable("is a directory, not a file")
        if not stat.S_ISREG(info.st_mode):
            raise Unreadable("is not a regular file")
        if info.st_size > limit:
            raise Unreadable(f"is larger than {limit // 1024} KiB")
        chunks = []
        size = 0
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise Unreadable(f"is larger than {limit // 1024} KiB")
        return b"".join(chunks)
    except OSError as exc:
        raise Unreadable(_reason(exc)) from None
    finally:
        os.close(fd)


def _reason(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, IsADirectoryError):
        return "is a directory, not a file"
    if isinstance(exc, PermissionError):
        return "permission denied"
    return (exc.strerror or type(exc).__name__).lower()


def read_config(path: str) -> Mapping[str, Any]:
    """The TOML file at `path`, parsed; Unreadable naming the problem (not the content)."""
    data = read_limited(path, CONFIG_LIMIT)
    import tomllib

    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise Unreadable("not valid TOML (not UTF-8)") from None
    except tomllib.TOMLDecodeError as exc:
        raise Unreadable(f"not valid TOML ({exc})") from None


def gather(
    env: Mapping[str, str],
    *,
    flags: Mapping[str, object] | None = None,
    command: tuple[str, ...] = (),
) -> Inputs:
    """Everything `load` needs, read now: X_FILE values under X, the config file parsed."""
    values = dict(env)
    labels: dict[str, str] = {}
    secrets: list[str] = []
    problems: list[str] = []
    for name in SECRET_FILE_VARIABLES:
        path = values.pop(f"{name}_FILE", "")
        if not path:
            continue
        label = f"{name}_FILE"
        if values.get(name):
            problems.append(f"{name} and {label} are both set: keep one")
            continue
        try:
            text = read_limited(path, SECRET_LIMIT).decode("utf-8")
        except Unreadable as exc:
            problems.append(f"{label}={one_line(path)}: {exc}")
            continue
        except UnicodeDecodeError:
            problems.append(f"{label}={one_line(path)}: not UTF-8 text")
            continue
        text = text.removesuffix("\n").removesuffix("\r")
        values[name] = text
        labels[name] = label
        secrets.append(text)
    flags = dict(flags or {})
    path = str(flags.get("config") or "") or values.get("ENTRYPOINT_CONFIG", "").strip()
    file = None
    if path:
        try:
            file = read_config(path)
        except Unreadable as exc:
            problems.append(f"ENTRYPOINT_CONFIG={one_line(path)}: {exc}")
    return Inputs(
        env=values,
        flags=flags,
        file=file,
        file_path=path or None,
        command=command,
        labels=labels,
        secrets=tuple(s for s in secrets if len(s) >= 3),
        problems=tuple(problems),
    )
