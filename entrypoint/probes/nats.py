"""NATS: the server's INFO; with credentials CONNECT + PING -> PONG."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from entrypoint import __version__
from entrypoint.plan.urls import Depth
from entrypoint.probes._net import ProbeError, Stream, not_the_protocol, tls_context, verify_tls

if TYPE_CHECKING:
    from entrypoint.plan.urls import Dependency
    from entrypoint.probes._net import Attempt

MAX_LINE = 1 << 16
# -ERR texts that no retry can change (the server's words, lowercased).
PERMANENT_ERRORS = (
    "authorization violation",
    "user authentication expired",
    "user authentication revoked",
    "account authentication expired",
)


def probe(dep: Dependency, attempt: Attempt) -> str:
    assert dep.port is not None
    stream = Stream(attempt, attempt.connect(dep.host, dep.port))
    attempt.step = "waiting for INFO"
    info = read_info(stream)
    server = f"NATS {info.get('version', '')}".strip()
    if dep.depth is not Depth.AUTHENTICATED:
        needs = " (requires authentication)" if info.get("auth_required") else ""
        return f"{server} ready{needs}"
    tls = bool(info.get("tls_required"))
    if tls:
        sock = attempt.start_tls(stream.sock, tls_context(verify_tls(dep.options)), dep.host)
        stream = Stream(attempt, sock)
    stream.send(connect_line(dep, tls=tls) + b"PING\r\n")
    attempt.step = "waiting for PONG"
    while True:
        line = stream.read_line(MAX_LINE, what="NATS")
        if line == b"PONG":
            return f"{server}: PONG"
        if line == b"PING":
            stream.send(b"PONG\r\n")
        elif line.startswith(b"-ERR"):
            raise classify(line)
        elif not (line == b"+OK" or line.startswith(b"INFO ")):
            raise not_the_protocol("NATS", line)


def read_info(stream: Stream) -> dict[str, Any]:
    if stream.peek(4) not in (b"INFO", b"-ERR"):
        raise not_the_protocol("NATS", stream.received)
    line = stream.read_line(MAX_LINE, what="NATS")
    if line.startswith(b"-ERR"):
        raise classify(line)
    if not line.startswith(b"INFO "):
        raise not_the_protocol("NATS", line)
    try:
        info = json.loads(line[5:])
    except ValueError:
        raise not_the_protocol("NATS", line) from None
    if not isinstance(info, dict):
        raise not_the_protocol("NATS", line)
    return info


def connect_line(dep: Dependency, *, tls: bool) -> bytes:
    options: dict[str, object] = {
        "verbose": False,
        "pedantic": False,
        "tls_required": tls,
        "name": "entrypoint-probe",
        "lang": "python",
        "version": __version__,
        "protocol": 1,
    }
    if dep.password is not None:
        options["user"] = dep.username or ""
        options["pass"] = dep.password
    else:
        options["auth_token"] = dep.username or ""
    return b"CONNECT " + json.dumps(options).encode() + b"\r\n"


def classify(line: bytes) -> ProbeError:
    text = line[4:].strip().strip(b"'").decode("utf-8", "replace")
    lowered = text.lower()
    permanent = any(error in lowered for error in PERMANENT_ERRORS)
    return ProbeError(f"the server said: {text}", permanent=permanent)
