"""Log lines: one event -> one line of JSON or console text, and a writer that never fails.

The ground floor, builtins only: web mode logs `mode_selected` from here before
its exec, and the supervisor's structlog renders every event with the same
functions (runtime/log.py), so the two paths print the same lines.

A lost log channel (the reader of stderr went away: `| tee` or a log shipper
died; a full disk) must never end supervision, whose child would then run on
unsupervised: `Sink.write` swallows the failure, there being nowhere to report
it, and points the descriptor at /dev/null so that nothing else (the
interpreter's flush at exit above all, which would turn the exit status into
120) trips over it again.
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, TextIO

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
# json.dumps's escapes (ensure_ascii): the lines are what the standard library would write.
_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
}


def timestamp(now: float | None = None) -> str:
    """ISO 8601 in UTC with microseconds, as structlog's TimeStamper(fmt="iso", utc=True)."""
    now = time.time() if now is None else now
    micros = int(now % 1 * 1e6)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{micros:06d}Z"


def _json(value: Any) -> str:
    if value is None or value is True or value is False:
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, str):
        if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
            return '"' + value + '"'
        out = []
        for char in value:
            if char in _ESCAPES:
                out.append(_ESCAPES[char])
            elif " " <= char <= "~":
                out.append(char)
            elif ord(char) > 0xFFFF:
                high, low = divmod(ord(char) - 0x10000, 0x400)
                out.append(f"\\u{0xD800 + high:04x}\\u{0xDC00 + low:04x}")
            else:
                out.append(f"\\u{ord(char):04x}")
        return '"' + "".join(out) + '"'
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        finite = float("-inf") < value < float("inf")  # NaN too; not math: a .so to load
        return float.__repr__(value) if finite else "null"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_json(str(k))}: {_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple | set | frozenset):
        return "[" + ", ".join(_json(item) for item in value) + "]"
    return _json(str(value))


def render_json(event: Mapping[str, Any]) -> str:
    """One JSON object, keys in the event's order, always a single line."""
    return "{" + ", ".join(f"{_json(str(k))}: {_json(v)}" for k, v in event.items()) + "}"


def _console_value(value: Any) -> str:
    if isinstance(value, str) and value and value.isprintable() and " " not in value:
        return value
    return repr(value)


def render_console(event: Mapping[str, Any]) -> str:
    """`timestamp [level] event  key=value...`, as structlog's ConsoleRenderer lays it out."""
    fields = dict(event)
    stamp = str(fields.pop("timestamp", ""))
    level = str(fields.pop("level", ""))
    name = _console_value(fields.pop("event", ""))
    rest = " ".join(f"{key}={_console_value(fields[key])}" for key in sorted(fields))
    return f"{stamp} [{level:<9}] {name:<30} {rest}".rstrip()


def wants_console(fmt: str, fd: int) -> bool:
    """`console`, or `auto` on a terminal."""
    if fmt == "console":
        return True
    if fmt != "auto":
        return False
    try:
        return os.isatty(fd)
    except OSError:
        return False


class Sink:
    """Writes whole lines to a stream; a write that fails loses the line, never raises."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        try:
            self.fd: int | None = stream.fileno()
        except (AttributeError, OSError, ValueError):
            self.fd = None  # a StringIO in tests
        self.lost = False

    def write(self, line: str) -> None:
        if self.lost:
            return
        try:
            if self.fd is None:
                self.stream.write(line + "\n")
                return
            self.stream.flush()  # anything Python buffered goes first
            data = (line + "\n").encode("utf-8", "backslashreplace")
            while data:
                data = data[os.write(self.fd, data) :]
        except (OSError, ValueError):
            self._lose()

    def _lose(self) -> None:
        self.lost = True
        if self.fd is None:
            return
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, self.fd)
            os.close(null)
        except OSError:
            pass


_sinks: dict[int, Sink] = {}


def sink(stream: TextIO) -> Sink:
    """The one Sink of `stream` (so that a lost stream is lost for every writer)."""
    key = id(stream)
    if key not in _sinks:
        _sinks[key] = Sink(stream)
    return _sinks[key]


def emit(
    stream: TextIO,
    fmt: str,
    threshold: str,
    level: str,
    event: str,
    **fields: Any,
) -> None:
    """Log one event without structlog (the exec path), as the supervisor's logger would."""
    if LEVELS[level] < LEVELS.get(threshold, LEVELS["info"]):
        return
    record = {**fields, "event": event, "level": level, "timestamp": timestamp()}
    out = sink(stream)
    console = out.fd is not None and wants_console(fmt, out.fd)
    out.write(render_console(record) if console else render_json(record))
