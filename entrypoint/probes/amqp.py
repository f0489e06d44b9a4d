"""AMQP 0-9-1: protocol header -> Connection.Start; with credentials the whole
opening (Start-Ok PLAIN, Tune, Tune-Ok, Open(vhost), Open-Ok), then a clean
Connection.Close / Close-Ok."""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Mapping
from typing import TYPE_CHECKING

from entrypoint import __version__
from entrypoint.plan.urls import Depth, Scheme
from entrypoint.probes._net import ProbeError, Stream, not_the_protocol, tls_context, verify_tls

if TYPE_CHECKING:
    from entrypoint.plan.urls import Dependency
    from entrypoint.probes._net import Attempt

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
FRAME_METHOD, FRAME_HEARTBEAT = 1, 8
FRAME_END = b"\xce"
MAX_FRAME = 1 << 20
CONNECTION = 10
START, START_OK, SECURE, TUNE, TUNE_OK, OPEN, OPEN_OK, CLOSE, CLOSE_OK = (
    10, 11, 20, 30, 31, 40, 41, 50, 51,
)  # fmt: skip
# Reply codes that no retry can change: ACCESS_REFUSED (403), NOT_FOUND (404),
# INVALID_PATH (402), NOT_ALLOWED (530: no such vhost, or no access to it).
PERMANENT_CODES = frozenset({402, 403, 404, 530})


def probe(dep: Dependency, attempt: Attempt) -> str:
    tls = tls_context(verify_tls(dep.options)) if dep.scheme is Scheme.AMQPS else None
    assert dep.port is not None
    stream = Stream(attempt, attempt.connect(dep.host, dep.port, tls=tls))
    stream.send(PROTOCOL_HEADER)
    attempt.step = "waiting for Connection.Start"
    method, args = read_method(stream)
    if method != START:
        raise not_the_protocol("AMQP 0-9-1", struct.pack(">HH", CONNECTION, method) + args)
    properties, mechanisms = parse_start(args)
    server = " ".join(p for p in (properties.get("product"), properties.get("version")) if p)
    server = server or "AMQP 0-9-1 server"
    if dep.depth is not Depth.AUTHENTICATED:
        return f"{server} ready"
    if "PLAIN" not in mechanisms:
        offered = " ".join(mechanisms) or "none"
        raise ProbeError(f"the server does not offer PLAIN login ({offered})", permanent=True)
    vhost = dep.database or "/"
    _open(stream, attempt, dep.username or "", dep.password or "", vhost)
    attempt.step = "closing"
    send_method(stream, CLOSE, struct.pack(">H", 200) + shortstr("probe done") + b"\0" * 4)
    try:
        while read_method(stream)[0] != CLOSE_OK:
            pass
    except (OSError, ProbeError):
        pass  # the answer to our Close is a courtesy; the vhost was open
    return f"{server}: vhost {vhost!r} open"


def _open(stream: Stream, attempt: Attempt, user: str, password: str, vhost: str) -> None:
    response = b"\0" + user.encode() + b"\0" + password.encode()
    client_properties = table(
        {
            "product": "entrypoint",
            "version": __version__,
            "connection_name": "entrypoint-probe",
            "capabilities": {"authentication_failure_close": True},
        }
    )
    start_ok = client_properties + shortstr("PLAIN") + longstr(response) + shortstr("en_US")
    send_method(stream, START_OK, start_ok)
    attempt.step = "waiting for Connection.Tune"
    try:
        method, args = read_method(stream)
    except ProbeError as exc:
        if exc.message.startswith("the server closed the connection"):
            # Without a Connection.Close, a close right after Start-Ok is the
            # specification's way of refusing the login.
            raise ProbeError(
                "login refused (the server closed the connection)", permanent=True
            ) from None
        raise
    if method != TUNE or len(args) < 8:
        raise not_the_protocol("AMQP 0-9-1", args)
    channel_max, frame_max, _heartbeat = struct.unpack(">HIH", args[:8])
    send_method(stream, TUNE_OK, struct.pack(">HIH", channel_max, frame_max or 131072, 0))
    send_method(stream, OPEN, shortstr(vhost) + shortstr("") + b"\0")
    attempt.step = "waiting for Connection.Open-Ok"
    method, args = read_method(stream)
    if method != OPEN_OK:
        raise not_the_protocol("AMQP 0-9-1", args)


def read_method(stream: Stream) -> tuple[int, bytes]:
    """The next Connection method on channel 0 (heartbeats skipped): (method id, args).

    A Connection.Close from the server is answered with Close-Ok and raised.
    """
    while True:
        header = stream.read_exact(7)
        if header.startswith(b"AMQP"):
            version = header[4:] + stream.read_exact(1)
            spoken = "-".join(str(b) for b in version[1:])
            raise ProbeError(f"the server speaks AMQP {spoken}, not 0-9-1", permanent=True)
        kind, channel, size = struct.unpack(">BHI", header)
        if kind not in (FRAME_METHOD, FRAME_HEARTBEAT) or size > MAX_FRAME:
            raise not_the_protocol("AMQP 0-9-1", header + stream.received)
        payload = stream.read_exact(size)
        if stream.read_exact(1) != FRAME_END:
            raise not_the_protocol("AMQP 0-9-1", header + payload)
        if kind == FRAME_HEARTBEAT:
            continue
        if channel != 0 or size < 4:
            raise not_the_protocol("AMQP 0-9-1", header + payload)
        class_id, method_id = struct.unpack(">HH", payload[:4])
        if class_id != CONNECTION:
            raise not_the_protocol("AMQP 0-9-1", header + payload)
        if method_id == CLOSE:
            code, text = _parse_close(payload[4:])
            with contextlib.suppress(OSError):
                send_method(stream, CLOSE_OK, b"")
            raise ProbeError(f"{text} (reply code {code})", permanent=code in PERMANENT_CODES)
        return method_id, payload[4:]


def _parse_close(args: bytes) -> tuple[int, str]:
    if len(args) < 3:
        return 0, "the server closed the connection"
    code, length = struct.unpack(">HB", args[:3])
    return code, args[3 : 3 + length].decode("utf-8", "replace")


def send_method(stream: Stream, method: int, args: bytes) -> None:
    payload = struct.pack(">HH", CONNECTION, method) + args
    stream.send(struct.pack(">BHI", FRAME_METHOD, 0, len(payload)) + payload + FRAME_END)


def parse_start(args: bytes) -> tuple[dict[str, str], list[str]]:
    """Connection.Start -> (server properties that are strings, mechanisms)."""
    try:
        offset = 2  # version-major, version-minor
        (table_size,) = struct.unpack_from(">I", args, offset)
        properties = parse_table(args[offset + 4 : offset + 4 + table_size])
        offset += 4 + table_size
        (size,) = struct.unpack_from(">I", args, offset)
        mechanisms = args[offset + 4 : offset + 4 + size].decode("utf-8", "replace").split()
    except (struct.error, IndexError):
        raise not_the_protocol("AMQP 0-9-1", args) from None
    return properties, mechanisms


_FIXED_SIZES = {
    b"t": 1, b"b": 1, b"B": 1, b"s": 2, b"u": 2, b"I": 4, b"i": 4, b"l": 8, b"L": 8,
    b"f": 4, b"d": 8, b"D": 5, b"T": 8, b"V": 0,
}  # fmt: skip


def parse_table(data: bytes) -> dict[str, str]:
    """The string-valued top-level fields of a field table (others skipped)."""
    found: dict[str, str] = {}
    offset = 0
    while offset < len(data):
        key_size = data[offset]
        key = data[offset + 1 : offset + 1 + key_size].decode("utf-8", "replace")
        offset += 1 + key_size
        kind = data[offset : offset + 1]
        offset += 1
        if kind in _FIXED_SIZES:
            offset += _FIXED_SIZES[kind]
        elif kind in (b"S", b"x", b"A", b"F"):
            (size,) = struct.unpack_from(">I", data, offset)
            if kind == b"S":
                found[key] = data[offset + 4 : offset + 4 + size].decode("utf-8", "replace")
            offset += 4 + size
        else:
            break  # a type this reader does not know: stop, keep what was found
    return found


def shortstr(text: str) -> bytes:
    data = text.encode()[:255]
    return bytes([len(data)]) + data


def longstr(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def table(fields: Mapping[str, str | bool | Mapping[str, bool]]) -> bytes:
    body = b""
    for key, value in fields.items():
        body += shortstr(key)
        if isinstance(value, bool):
            body += b"t" + (b"\x01" if value else b"\x00")
        elif isinstance(value, Mapping):
            body += b"F" + table(value)
        else:
            body += b"S" + longstr(value.encode())
    return longstr(body)
