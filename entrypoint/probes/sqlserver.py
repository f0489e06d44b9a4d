"""SQL Server: a TDS PRELOGIN exchange (the first message of every client)."""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from entrypoint.probes._net import Stream, not_the_protocol

if TYPE_CHECKING:
    from entrypoint.plan.urls import Dependency
    from entrypoint.probes._net import Attempt

PRELOGIN, TABULAR_RESULT = 0x12, 0x04
VERSION, ENCRYPTION, TERMINATOR = 0x00, 0x01, 0xFF
ENCRYPT_NOT_SUP = 0x02
MAX_PACKET = 4096


def prelogin_packet() -> bytes:
    # Two options (VERSION: 6 bytes, ENCRYPTION: 1 byte) after a 11-byte option table.
    table = struct.pack(">BHH", VERSION, 11, 6) + struct.pack(">BHH", ENCRYPTION, 17, 1)
    payload = table + bytes([TERMINATOR]) + b"\0" * 6 + bytes([ENCRYPT_NOT_SUP])
    header = struct.pack(">BBHHBB", PRELOGIN, 0x01, 8 + len(payload), 0, 1, 0)
    return header + payload


def probe(dep: Dependency, attempt: Attempt) -> str:
    assert dep.port is not None
    stream = Stream(attempt, attempt.connect(dep.host, dep.port))
    stream.send(prelogin_packet())
    attempt.step = "waiting for the PRELOGIN answer"
    header = stream.read_exact(8)
    kind, _status, length = struct.unpack(">BBH", header[:4])
    if kind != TABULAR_RESULT or not 8 < length <= MAX_PACKET:
        raise not_the_protocol("TDS (SQL Server)", header + stream.received)
    payload = stream.read_exact(length - 8)
    version = parse_version(payload)
    if version is None:
        raise not_the_protocol("TDS (SQL Server)", header + payload)
    return f"SQL Server {version} ready"


def parse_version(payload: bytes) -> str | None:
    """The VERSION option of a PRELOGIN answer, as major.minor.build."""
    offset = 0
    while offset < len(payload) and payload[offset] != TERMINATOR:
        if offset + 5 > len(payload):
            return None
        token, start, size = struct.unpack_from(">BHH", payload, offset)
        if token == VERSION and size >= 4 and start + size <= len(payload):
            major, minor, build = struct.unpack_from(">BBH", payload, start)
            return f"{major}.{minor}.{build}"
        offset += 5
    return None
