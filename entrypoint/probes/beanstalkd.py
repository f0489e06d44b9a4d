"""beanstalkd: `stats` -> `OK <bytes>` and the server's YAML."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from entrypoint.probes._net import ProbeError, Stream, not_the_protocol

if TYPE_CHECKING:
    from entrypoint.plan.urls import Dependency
    from entrypoint.probes._net import Attempt

MAX_STATS = 1 << 16


def probe(dep: Dependency, attempt: Attempt) -> str:
    assert dep.port is not None
    stream = Stream(attempt, attempt.connect(dep.host, dep.port))
    stream.send(b"stats\r\n")
    attempt.step = "waiting for the stats reply"
    if stream.peek(1) not in (b"O", b"I", b"D", b"U", b"B"):  # OK, OUT_OF_MEMORY, INTERNAL_ERROR...
        raise not_the_protocol("beanstalkd", stream.received)
    line = stream.read_line(256, what="beanstalkd")
    if line in (b"OUT_OF_MEMORY", b"INTERNAL_ERROR", b"DRAINING"):
        raise ProbeError(f"the server said: {line.decode()}")
    match = re.fullmatch(rb"OK ([0-9]{1,6})", line)
    if match is None or int(match.group(1)) > MAX_STATS:
        raise not_the_protocol("beanstalkd", line)
    body = stream.read_exact(int(match.group(1)) + 2)
    version = re.search(rb"(?m)^version: \"?([^\"\r\n]+)", body)
    return f"beanstalkd {version.group(1).decode()} ready" if version else "beanstalkd ready"
