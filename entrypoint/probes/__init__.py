"""Protocol-level probes: one module per backend, one attempt per call.

`probe(dep, timeout=...)` connects, speaks the backend's protocol far enough to
know that it is ready (see docs/dependencies.md for each backend's depth), and
returns a short detail, or raises ProbeError: permanent when waiting cannot help
(credentials refused, no such database), transient otherwise. Every message is
redacted with the dependency's secrets before it leaves this module.
"""

from __future__ import annotations

import importlib
import socket
import ssl
from typing import TYPE_CHECKING, Protocol

from entrypoint.plan.redact import redact_text
from entrypoint.plan.urls import Scheme
from entrypoint.probes._net import Attempt, ProbeError

if TYPE_CHECKING:
    from entrypoint.plan.urls import Dependency

__all__ = ["ProbeError", "probe"]

MODULES: dict[Scheme, str] = {
    Scheme.REDIS: "redis",
    Scheme.REDISS: "redis",
    Scheme.POSTGRESQL: "postgres",
    Scheme.MYSQL: "mysql",
    Scheme.AMQP: "amqp",
    Scheme.AMQPS: "amqp",
    Scheme.NATS: "nats",
    Scheme.SQLITE: "sqlite",
    Scheme.HTTP: "http",
    Scheme.HTTPS: "http",
    Scheme.TCP: "tcp",
    Scheme.BEANSTALKD: "beanstalkd",
    Scheme.SQLSERVER: "sqlserver",
}


class _Backend(Protocol):
    def probe(self, dep: Dependency, attempt: Attempt) -> str: ...


def probe(dep: Dependency, *, timeout: float) -> str:
    """One attempt, everything in it (resolve, connect, TLS, reads) within `timeout` s."""
    backend: _Backend = importlib.import_module(f"entrypoint.probes.{MODULES[dep.scheme]}")
    with Attempt(timeout) as attempt:
        try:
            detail = backend.probe(dep, attempt)
            if dep.unverified:
                detail = f"{detail}; {dep.unverified}"
            return redact_text(detail, dep.secrets)
        except ProbeError as exc:
            error = exc if exc.permanent or not attempt.expired else attempt.timed_out()
        except TimeoutError:
            error = attempt.timed_out()
        except socket.gaierror as exc:
            reason = exc.strerror or str(exc)
            error = ProbeError(f"the name {dep.host!r} does not resolve ({reason})")
        except ConnectionRefusedError:
            error = ProbeError(f"connection refused by {dep.host}:{dep.port}")
        except ssl.SSLCertVerificationError as exc:
            reason = exc.verify_message or exc.reason or "not trusted"
            error = ProbeError(f"TLS certificate not accepted: {reason}", permanent=True)
        except ssl.SSLError as exc:
            error = (
                attempt.timed_out()
                if attempt.expired
                else ProbeError(f"TLS handshake failed: {exc.reason or exc}")
            )
        except OSError as exc:
            error = attempt.timed_out() if attempt.expired else ProbeError(_os_reason(exc))
        except Exception as exc:  # noqa: BLE001 - a driver may raise anything on a broken peer
            error = ProbeError(f"unexpected {type(exc).__name__}: {exc}")
    raise ProbeError(redact_text(error.message, dep.secrets), permanent=error.permanent)


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, ConnectionResetError):
        return "the server reset the connection"
    if isinstance(exc, BrokenPipeError):
        return "the server closed the connection"
    return exc.strerror or str(exc) or type(exc).__name__
