"""PostgreSQL: StartupMessage, then read on to ReadyForQuery or an ErrorResponse.

A server that trusts the connection reports an unknown database only after
AuthenticationOk, hence the reading on. A server that asks for a password is up;
with a password and psycopg installed, a real login and `SELECT 1` follow.
"""

from __future__ import annotations

import contextlib
import math
import struct
from typing import TYPE_CHECKING

from entrypoint.plan.urls import Depth
from entrypoint.probes._net import ProbeError, Stream, not_the_protocol, tls_context

if TYPE_CHECKING:
    from entrypoint.plan.urls import Dependency
    from entrypoint.probes._net import Attempt

PROTOCOL_3_0 = 196608
SSL_REQUEST = struct.pack(">II", 8, 80877103)
TERMINATE = b"X" + struct.pack(">I", 4)
MAX_MESSAGE = 1 << 20
# Backend messages that may come before ReadyForQuery.
KNOWN = frozenset(b"RSKNEZv")
AUTH_METHODS = {
    2: "Kerberos",
    3: "a clear-text password",
    5: "an MD5 password",
    7: "GSSAPI",
    9: "SSPI",
    10: "SASL (SCRAM)",
}
# SQLSTATEs (and classes) that no retry can change.
PERMANENT_STATES = frozenset({"3D000", "3F000", "42501", "28000", "28P01"})
PERMANENT_CLASSES = frozenset({"28"})


def probe(dep: Dependency, attempt: Attempt) -> str:
    user = dep.username or "postgres"
    database = dep.database or user
    assert dep.port is not None
    sock = attempt.connect(dep.host, dep.port)
    stream = Stream(attempt, sock)
    stream = _negotiate_ssl(dep, attempt, stream)
    stream.send(startup_message(user, database))
    attempt.step = "waiting for the authentication answer"
    version = ""
    while True:
        kind, payload = read_message(stream)
        if kind == b"R":
            code = struct.unpack(">I", payload[:4])[0] if len(payload) >= 4 else -1
            if code == 0:
                attempt.step = "waiting for ReadyForQuery"
                continue
            method = AUTH_METHODS.get(code)
            if method is None:
                raise not_the_protocol("PostgreSQL", kind + payload)
            _terminate(stream)
            if dep.depth is Depth.AUTHENTICATED:
                return login(dep, attempt, user, database)
            return f"PostgreSQL up (asks for {method})"
        if kind == b"E":
            raise classify(parse_fields(payload))
        if kind == b"S":
            name, _, value = payload.rstrip(b"\0").partition(b"\0")
            if name == b"server_version":
                version = value.decode("utf-8", "replace").split(" ")[0]
        elif kind == b"Z":
            _terminate(stream)
            return f"PostgreSQL {version} ready" if version else "PostgreSQL ready"


def _negotiate_ssl(dep: Dependency, attempt: Attempt, stream: Stream) -> Stream:
    """libpq's sslmode: `prefer` (the default) asks for TLS and takes a no."""
    mode = (dep.option("sslmode") or "prefer").lower()
    if mode in ("disable", "allow"):
        return stream
    attempt.step = "waiting for the answer to SSLRequest"
    stream.send(SSL_REQUEST)
    answer = stream.read_exact(1)
    if answer == b"N":
        if mode in ("require", "verify-ca", "verify-full"):
            raise ProbeError(f"the server does not accept SSL (sslmode={mode})", permanent=True)
        return stream
    if answer != b"S":
        raise not_the_protocol("PostgreSQL", answer + stream.received)
    context = tls_context(verify=mode in ("verify-ca", "verify-full"))
    context.check_hostname = mode == "verify-full"
    return Stream(attempt, attempt.start_tls(stream.sock, context, dep.host))


def startup_message(user: str, database: str) -> bytes:
    params = {"user": user, "database": database, "application_name": "entrypoint-probe"}
    body = struct.pack(">I", PROTOCOL_3_0)
    body += b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in params.items()) + b"\0"
    return struct.pack(">I", len(body) + 4) + body


def read_message(stream: Stream) -> tuple[bytes, bytes]:
    header = stream.read_exact(5)
    kind = header[:1]
    length = struct.unpack(">I", header[1:])[0]
    if kind[0] not in KNOWN or not 4 <= length <= MAX_MESSAGE:
        raise not_the_protocol("PostgreSQL", header + stream.received)
    return kind, stream.read_exact(length - 4)


def parse_fields(payload: bytes) -> dict[str, str]:
    """An ErrorResponse's fields: {'S': severity, 'C': SQLSTATE, 'M': message, ...}."""
    fields: dict[str, str] = {}
    for part in payload.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode("utf-8", "replace")
    return fields


def classify(fields: dict[str, str]) -> ProbeError:
    state = fields.get("C", "")
    message = fields.get("M", "error")
    return classify_state(state, message)


def classify_state(state: str, message: str) -> ProbeError:
    """28xxx (authorization), 3D000 (no such database)... permanent; 57P03 (starting
    up), 53300 (too many connections) and everything else transient."""
    permanent = state in PERMANENT_STATES or state[:2] in PERMANENT_CLASSES
    suffix = f" (SQLSTATE {state})" if state else ""
    return ProbeError(f"{message}{suffix}", permanent=permanent)


def _terminate(stream: Stream) -> None:
    with contextlib.suppress(OSError):
        stream.send(TERMINATE)


def login(dep: Dependency, attempt: Attempt, user: str, database: str) -> str:
    """psycopg connects with the password and runs SELECT 1.

    libpq's connect timeout is whole seconds, at least 2: this step may take up
    to that, even when the attempt has less left.
    """
    import psycopg

    attempt.step = "logging in"
    try:
        with psycopg.connect(
            host=dep.host,
            port=dep.port,
            user=user,
            password=dep.password or "",
            dbname=database,
            connect_timeout=max(2, math.ceil(attempt.left())),
            sslmode=dep.option("sslmode") or "prefer",
            application_name="entrypoint-probe",
            autocommit=True,
        ) as connection:
            connection.execute("SELECT 1").fetchone()
            number = connection.info.server_version
    except psycopg.Error as exc:
        raise classify_driver_error(exc) from None
    version = f"{number // 10000}.{number % 10000}" if number >= 100000 else str(number)
    return f"PostgreSQL {version}: SELECT 1 as {user}"


def classify_driver_error(exc: Exception) -> ProbeError:
    """psycopg's errors: by SQLSTATE when it has one, else by libpq's words."""
    text = str(exc).strip()
    message = text.rsplit("FATAL:", 1)[-1].strip() if "FATAL:" in text else text
    state = getattr(exc, "sqlstate", None) or _state_from_text(message)
    return classify_state(state, message)


def _state_from_text(message: str) -> str:
    lowered = message.lower()
    if "password authentication failed" in lowered:
        return "28P01"
    if "no pg_hba.conf entry" in lowered or ("role" in lowered and "does not exist" in lowered):
        return "28000"
    if "database" in lowered and "does not exist" in lowered:
        return "3D000"
    if "starting up" in lowered:
        return "57P03"
    if "too many" in lowered and "connections" in lowered:
        return "53300"
    return ""
