"""structlog, configured once: JSON lines on stderr, or console rendering on a TTY.

Every event passes through the redaction processor last, so no field value can
carry a secret out (the values of the environment's secrets are masked too).
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any


class _Deferred(types.ModuleType):
    """Stands in `sys.modules` for a module until the first use of one of its names.

    structlog imports asyncio for its async methods only, which the entrypoint
    never calls; loading it would cost a supervisor that lives for days about
    10 MB of RSS, and every start about 15 ms. `__spec__` is None, so that
    `import asyncio` returns this object without loading anything (a
    `LazyLoader` module loads on that very access on Python 3.11). The first
    other attribute asked for (`asyncio.get_running_loop`, psycopg's own uses)
    imports the real module, which then replaces this one everywhere but in
    the names already bound to it, which keep forwarding.
    """

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.__spec__ = None

    def __getattr__(self, attribute: str) -> Any:
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        return getattr(importlib.import_module(self.__name__), attribute)


def _defer_asyncio() -> None:
    if "asyncio" not in sys.modules:
        sys.modules["asyncio"] = _Deferred("asyncio")


_defer_asyncio()

import structlog  # noqa: E402 - only once asyncio is deferred

from entrypoint import logline  # noqa: E402
from entrypoint.plan.redact import redact_text  # noqa: E402


class Redactor:
    """A structlog processor that masks secrets in every string field."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = tuple(secrets)

    def __call__(
        self, _logger: object, _method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key, value in event.items():
            event[key] = self._redact(value)
        return event

    def _redact(self, value: Any) -> Any:
        if isinstance(value, str):
            return redact_text(value, self.secrets)
        if isinstance(value, list | tuple):
            return [self._redact(item) for item in value]
        if isinstance(value, Mapping):
            return {key: self._redact(item) for key, item in value.items()}
        if isinstance(value, BaseException):
            return redact_text(str(value), self.secrets)
        return value


class SinkLogger:
    """structlog's logger: whole lines to a `logline.Sink`, which never raises.

    A lost log channel (a dead `| tee`, a log shipper gone, a full disk) loses
    the lines, never the supervision of the child.
    """

    def __init__(self, stream: Any) -> None:
        self._sink = logline.sink(stream)

    def msg(self, message: str) -> None:
        self._sink.write(message)

    log = debug = info = warn = warning = err = error = critical = exception = fatal = msg


def _render_json(_logger: object, _method: str, event: MutableMapping[str, Any]) -> str:
    return logline.render_json(event)


def _render_console(_logger: object, _method: str, event: MutableMapping[str, Any]) -> str:
    return logline.render_console(event)


def configure(
    level: str = "info", fmt: str = "auto", secrets: Iterable[str] = (), stream: Any = None
) -> None:
    """Configure structlog for the whole process; call once, at CLI start."""
    stream = stream if stream is not None else sys.stderr
    sink = logline.sink(stream)
    console = sink.fd is not None and logline.wants_console(fmt, sink.fd)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            Redactor(secrets),
            _render_console if console else _render_json,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logline.LEVELS.get(level, logline.LEVELS["info"])
        ),
        logger_factory=lambda *_args: SinkLogger(stream),
        cache_logger_on_first_use=False,
    )


def get_logger() -> Any:
    return structlog.get_logger("entrypoint")


def bind(**fields: Any) -> None:
    """Add `fields` to every event from now on (mode, child_pid)."""
    structlog.contextvars.bind_contextvars(**fields)


def unbind(*names: str) -> None:
    structlog.contextvars.unbind_contextvars(*names)
