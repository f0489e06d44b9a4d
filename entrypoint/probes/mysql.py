"""MySQL / MariaDB: the server's greeting (protocol 10) or its ERR packet.

With a user (or password) and PyMySQL installed, a login and `SELECT 1` follow,
on a socket of this attempt, so the attempt's deadline bounds the driver too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from entrypoint.plan.urls import Depth
from entrypoint.probes._net import ProbeError, Stream, not_the_protocol

if TYPE_CHECKING:
    from entrypoint.plan.urls import Dependency
    from entrypoint.probes._net import Attempt

MAX_GREETING = 1 << 16
# Error codes that no retry can change: access denied (1044, 1045, 1698), unknown
# database (1049), host not allowed or blocked (1130, 1129), authentication
# plugin or password state (1251, 1862), secure transport required (3159).
PERMANENT_CODES = frozenset({1044, 1045, 1049, 1129, 1130, 1251, 1698, 1862, 3159})
# Too many connections (1040, 1203), server shutting down (1053), and the
# client's own codes for a lost or refused connection (2002, 2003, 2006, 2013).


def probe(dep: Dependency, attempt: Attempt) -> str:
    assert dep.port is not None
    sock = attempt.connect(dep.host, dep.port)
    version = read_greeting(Stream(attempt, sock), attempt)
    sock.close()
    product = "MariaDB" if "mariadb" in version.lower() else "MySQL"
    version = version.removeprefix("5.5.5-").split("-")[0]
    if dep.depth is Depth.AUTHENTICATED:
        user = login(dep, attempt)
        return f"{product} {version}: SELECT 1 as {user}"
    return f"{product} {version} ready"


def read_greeting(stream: Stream, attempt: Attempt) -> str:
    """The server version from the initial handshake; ProbeError for an ERR packet."""
    attempt.step = "waiting for the greeting"
    header = stream.read_exact(4)
    length = int.from_bytes(header[:3], "little")
    if not 1 <= length <= MAX_GREETING or header[3] != 0:
        raise not_the_protocol("MySQL", header + stream.received)
    payload = stream.read_exact(length)
    if payload[0] == 0xFF and length >= 3:
        code = int.from_bytes(payload[1:3], "little")
        message = payload[3:]
        if message.startswith(b"#"):
            message = message[6:]
        raise classify(code, message.decode("utf-8", "replace"))
    end = payload.find(b"\0", 1)
    version = payload[1:end].decode("ascii", "replace") if end > 0 else ""
    if payload[0] != 10 or not version or not version.isprintable():
        raise not_the_protocol("MySQL", header + payload)
    return version


def classify(code: int, message: str) -> ProbeError:
    # "(using password: YES)" reads as a leak to every log scanner; say it in words.
    message = message.replace("(using password: YES)", "(with a password)")
    message = message.replace("(using password: NO)", "(without a password)")
    return ProbeError(f"{message} (error {code})", permanent=code in PERMANENT_CODES)


def login(dep: Dependency, attempt: Attempt) -> str:
    """PyMySQL logs in on a socket of this attempt and runs SELECT 1; the user name."""
    import pymysql

    user = dep.username or ""
    left = attempt.left()
    connection = pymysql.connections.Connection(
        host=dep.host,
        port=dep.port,
        user=user,
        password=dep.password or "",
        database=dep.database,
        connect_timeout=left,
        read_timeout=left,
        write_timeout=left,
        program_name="entrypoint-probe",
        defer_connect=True,
    )
    assert dep.port is not None
    sock = attempt.connect(dep.host, dep.port)
    attempt.step = "logging in"
    try:
        connection.connect(sock)
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except pymysql.err.MySQLError as exc:
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
        message = str(exc.args[1]) if len(exc.args) > 1 else str(exc)
        raise classify(code, message) from None
    finally:
        if connection.open:
            connection.close()
    return user
