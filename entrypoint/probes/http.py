"""HTTP(S): a request to the URL's path; any status below 500 is an answer."""

from __future__ import annotations

import base64
import re
from typing import TYPE_CHECKING

from entrypoint import __version__
from entrypoint.plan.urls import DEFAULT_PORTS, Scheme
from entrypoint.probes._net import ProbeError, Stream, not_the_protocol, tls_context, verify_tls

if TYPE_CHECKING:
    from entrypoint.plan.urls import Dependency
    from entrypoint.probes._net import Attempt

STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([1-5][0-9]{2})(?: (.*))?")
MAX_LINE = 8192


def probe(dep: Dependency, attempt: Attempt) -> str:
    tls = tls_context(verify_tls(dep.options)) if dep.scheme is Scheme.HTTPS else None
    assert dep.port is not None
    stream = Stream(attempt, attempt.connect(dep.host, dep.port, tls=tls))
    stream.send(request(dep))
    attempt.step = "waiting for the status line"
    if stream.peek(5) != b"HTTP/":
        raise not_the_protocol("HTTP", stream.received)
    line = stream.read_line(MAX_LINE, what="HTTP", terminator=b"\n").rstrip(b"\r")
    match = STATUS_LINE.fullmatch(line)
    if match is None:
        raise not_the_protocol("HTTP", line)
    status = int(match.group(1))
    reason = (match.group(2) or b"").decode("latin-1").strip()
    answer = f"HTTP {status} {reason}".strip()
    if status >= 500:
        raise ProbeError(answer)
    return answer


def request(dep: Dependency) -> bytes:
    host = f"[{dep.host}]" if ":" in dep.host else dep.host
    if dep.port != DEFAULT_PORTS[dep.scheme]:
        host += f":{dep.port}"
    lines = [
        f"GET {dep.path} HTTP/1.1",
        f"Host: {host}",
        f"User-Agent: entrypoint/{__version__} (dependency probe)",
        "Accept: */*",
        "Connection: close",
    ]
    if dep.username is not None or dep.password is not None:
        credentials = f"{dep.username or ''}:{dep.password or ''}".encode()
        lines.append("Authorization: Basic " + base64.b64encode(credentials).decode())
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
