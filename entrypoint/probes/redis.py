"""Redis: AUTH (when a password is given), SELECT (when a db is given), PING -> PONG."""

from __future__ import annotations

from typing import TYPE_CHECKING

from entrypoint.plan.urls import Scheme
from entrypoint.probes._net import ProbeError, not_the_protocol, tls_context, verify_tls
from entrypoint.probes.resp import RedisConnection, RedisProtocolError, RedisReplyError, Reply

if TYPE_CHECKING:
    from entrypoint.plan.urls import Dependency
    from entrypoint.probes._net import Attempt

# Replies that no retry can change: credentials, permissions, protected mode.
PERMANENT_CODES = frozenset({"NOAUTH", "WRONGPASS", "NOPERM", "DENIED"})
# Replies of a server that is not ready yet.
TRANSIENT_CODES = frozenset({"LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN"})


def probe(dep: Dependency, attempt: Attempt) -> str:
    verify = verify_tls(dep.options)
    tls = tls_context(verify) if dep.scheme is Scheme.REDISS else None
    assert dep.port is not None
    sock = attempt.connect(dep.host, dep.port, tls=tls)
    # Over the attempt's own socket, so its watchdog bounds every read (a reply
    # dripping in byte by byte included).
    connection = RedisConnection.from_socket(sock)
    try:
        if dep.password is not None:
            auth = (dep.username, dep.password) if dep.username else (dep.password,)
            _command(connection, attempt, "AUTH", "AUTH", *auth)
        if dep.database is not None:
            _command(connection, attempt, "SELECT", "SELECT", dep.database)
        reply = _command(connection, attempt, "PING", "PING")
    finally:
        connection.close()
    if reply != "PONG":
        shown = reply if isinstance(reply, bytes) else str(reply).encode()
        raise not_the_protocol("Redis", b"PING answered " + shown)
    return "PONG"


def _command(connection: RedisConnection, attempt: Attempt, stage: str, *args: str) -> Reply:
    attempt.step = f"waiting for the {stage} reply"
    connection.settimeout(attempt.left())
    try:
        return connection.command(*args)
    except RedisReplyError as exc:
        raise classify(stage, str(exc)) from None
    except RedisProtocolError as exc:
        if str(exc) == "connection closed":
            raise ProbeError(f"the server closed the connection ({attempt.step})") from None
        raise not_the_protocol("Redis") from None


def classify(stage: str, reply: str) -> ProbeError:
    """A Redis error reply -> ProbeError (permanent when retrying cannot help)."""
    code = reply.split(" ", 1)[0]
    if code in PERMANENT_CODES:
        hint = " (the server needs a password: put it in the URL)" if code == "NOAUTH" else ""
        return ProbeError(f"{stage} refused: {reply}{hint}", permanent=True)
    if code in TRANSIENT_CODES:
        return ProbeError(f"{stage}: {reply}")
    # Plain -ERR: to AUTH it means bad credentials (or none configured), to SELECT
    # a database that cannot exist; to PING it is some passing state.
    return ProbeError(f"{stage} refused: {reply}", permanent=stage in ("AUTH", "SELECT"))
