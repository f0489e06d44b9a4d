"""Probes against servers written here: hostile ones that must never pass for ready,
and well-behaved fakes of the protocols that have no real server on this machine."""

from __future__ import annotations

import socket
import sqlite3
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from entrypoint.errors import UnavailableError
from entrypoint.plan.urls import Dependency, parse_url
from entrypoint.probes import ProbeError, probe
from entrypoint.probes.sqlserver import prelogin_packet
from entrypoint.runtime.waiting import wait_for
from tests.probe_helpers import (
    FakeInbox,
    LoopbackServer,
    close_at_once,
    closed_port,
    dripping,
    garbage,
    scripted,
    silent,
    speaks_http,
)

Handler = Callable[[socket.socket, threading.Event], None]

PROBE_TIMEOUT = 0.4
# Scheduling slack on a loaded 2-core machine: an attempt ends by its timeout plus this.
SLACK = 0.3

SCHEMES = [
    "redis://127.0.0.1:{port}",
    "rediss://127.0.0.1:{port}",
    "postgresql://app@127.0.0.1:{port}/app",
    "postgresql://app:pw@127.0.0.1:{port}/app",
    "mysql://127.0.0.1:{port}",
    "mysql://root:pw@127.0.0.1:{port}/app",
    "amqp://127.0.0.1:{port}",
    "amqp://guest:guest@127.0.0.1:{port}/",
    "amqps://guest:guest@127.0.0.1:{port}/",
    "nats://127.0.0.1:{port}",
    "nats://u:p@127.0.0.1:{port}",
    "http://127.0.0.1:{port}/health",
    "https://127.0.0.1:{port}/health",
    "beanstalkd://127.0.0.1:{port}",
    "sqlserver://127.0.0.1:{port}",
]

HOSTILE: dict[str, Handler] = {
    "silent": silent,
    "garbage": garbage,
    "closes-at-once": close_at_once,
    "one-byte-a-second": dripping(1.0),
    "one-byte-every-0.1s": dripping(0.1),
    "speaks-http": speaks_http,
}


def attempt(url: str, port: int) -> tuple[ProbeError, float]:
    dep = parse_url(url.format(port=port), "QUEUE_URL")
    began = time.monotonic()
    with pytest.raises(ProbeError) as caught:
        probe(dep, timeout=PROBE_TIMEOUT)
    return caught.value, time.monotonic() - began


def attempt_all(urls: list[str], port: int) -> dict[str, tuple[ProbeError, float]]:
    """`attempt` for every URL at once (each in its own thread), keyed by URL."""
    results: dict[str, tuple[ProbeError, float]] = {}
    failures: list[BaseException] = []

    def run(url: str) -> None:
        try:
            results[url] = attempt(url, port)
        except BaseException as exc:  # an assertion inside attempt(): report it below
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(url,)) for url in urls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not failures, failures
    return results


@pytest.mark.parametrize("behaviour", list(HOSTILE))
def test_hostile_server_is_never_ready(behaviour: str) -> None:
    # An HTTP 400 from an HTTP server is an answer: see test_http_below_500_is_ready.
    urls = [u for u in SCHEMES if not (behaviour == "speaks-http" and u.startswith("http://"))]
    with LoopbackServer(HOSTILE[behaviour]) as server:
        results = attempt_all(urls, server.port)
    assert sorted(results) == sorted(urls)
    for url, (error, elapsed) in results.items():
        assert not error.permanent, (url, error)
        assert elapsed < PROBE_TIMEOUT + SLACK, (url, elapsed)
        if behaviour in ("silent", "one-byte-every-0.1s"):
            # Reads that keep getting bytes still end with the attempt's deadline.
            assert "timed out after 0.4 s" in str(error) or "does not speak" in str(error), (
                url,
                error,
            )


@pytest.mark.parametrize(
    ("url", "data"),
    [
        ("redis://127.0.0.1:{port}", b"+PONG"),  # a status line that never ends
        ("amqp://127.0.0.1:{port}", b"\x01\x00\x00\x00\x00\x01\x00"),  # a frame never complete
        ("postgresql://app@127.0.0.1:{port}/app", b"NS\x00\x00\x01\x00" + b"x" * 64),
        ("nats://127.0.0.1:{port}", b"INFO {" + b" " * 64),
        ("http://127.0.0.1:{port}/", b"HTTP/1.1 200 " + b"O" * 64),
    ],
)
def test_drip_below_the_read_timeout_still_ends_on_time(url: str, data: bytes) -> None:
    # A byte every 0.05 s never trips a per-read timeout of 0.4 s: only a deadline helps.
    with LoopbackServer(dripping(0.05, data)) as server:
        error, elapsed = attempt(url, server.port)
    assert str(error).startswith("timed out after 0.4 s"), error
    assert PROBE_TIMEOUT - 0.05 <= elapsed < PROBE_TIMEOUT + SLACK


def test_http_on_the_redis_port() -> None:
    with LoopbackServer(speaks_http) as server:
        error, _ = attempt("redis://127.0.0.1:{port}", server.port)
    assert str(error) == "the server does not speak Redis"
    assert not error.permanent


def test_garbage_is_named_as_another_protocol() -> None:
    with LoopbackServer(garbage) as server:
        error, _ = attempt("nats://127.0.0.1:{port}", server.port)
    assert str(error).startswith("the server does not speak NATS: it sent '\\x17\\x03")


@pytest.mark.parametrize("behaviour", ["silent", "one-byte-a-second", "garbage"])
def test_the_wait_respects_its_deadline(behaviour: str) -> None:
    with LoopbackServer(HOSTILE[behaviour]) as server:
        dep = parse_url(f"redis://127.0.0.1:{server.port}", "QUEUE_URL")
        began = time.monotonic()
        with pytest.raises(UnavailableError) as caught:
            wait_for([dep], timeout=1.5, probe_timeout=PROBE_TIMEOUT, inbox=FakeInbox())
        elapsed = time.monotonic() - began
        connections = server.connections
    assert 1.3 <= elapsed < 1.5 + SLACK
    assert connections >= 2  # retried: every failure here is transient
    assert caught.value.exit_code == 69
    assert "still unavailable after 1.5 s" in str(caught.value)


def test_an_unresolvable_name_is_transient_until_the_deadline() -> None:
    dep = parse_url("redis://no-such-host.invalid:6379", "QUEUE_URL")
    began = time.monotonic()
    with pytest.raises(UnavailableError) as caught:
        wait_for([dep], timeout=1.5, probe_timeout=PROBE_TIMEOUT, inbox=FakeInbox())
    elapsed = time.monotonic() - began
    assert 1.3 <= elapsed < 1.5 + SLACK
    message = str(caught.value)
    assert "no-such-host.invalid" in message
    assert "does not resolve" in message or "resolving" in message
    attempts = int(message.split("(", 2)[1].split(" ", 1)[0])
    assert attempts >= 2


def test_a_closed_port_is_refused_and_transient() -> None:
    dep = parse_url(f"tcp://127.0.0.1:{closed_port()}", "ENTRYPOINT_WAIT_FOR")
    with pytest.raises(ProbeError) as caught:
        probe(dep, timeout=PROBE_TIMEOUT)
    assert str(caught.value).startswith("connection refused by 127.0.0.1:")
    assert not caught.value.permanent


def test_tcp_is_ready_when_the_port_accepts() -> None:
    with LoopbackServer(silent) as server:
        dep = parse_url(f"tcp://127.0.0.1:{server.port}", "ENTRYPOINT_WAIT_FOR")
        assert probe(dep, timeout=PROBE_TIMEOUT) == "port open"


# -- well-behaved fakes (no such server on this machine) -------------------------------------


def http_server(status: str) -> Handler:
    return scripted((b"GET /health HTTP/1.1\r\n", f"HTTP/1.1 {status}\r\n\r\n".encode()))


@pytest.mark.parametrize("status", ["200 OK", "204 No Content", "302 Found", "404 Not Found"])
def test_http_below_500_is_ready(status: str) -> None:
    with LoopbackServer(http_server(status)) as server:
        dep = parse_url(f"http://127.0.0.1:{server.port}/health", "ENTRYPOINT_WAIT_FOR")
        assert probe(dep, timeout=PROBE_TIMEOUT) == f"HTTP {status}"


def test_http_5xx_is_transient() -> None:
    with LoopbackServer(http_server("503 Service Unavailable")) as server:
        dep = parse_url(f"http://127.0.0.1:{server.port}/health", "ENTRYPOINT_WAIT_FOR")
        with pytest.raises(ProbeError) as caught:
            probe(dep, timeout=PROBE_TIMEOUT)
    assert (str(caught.value), caught.value.permanent) == ("HTTP 503 Service Unavailable", False)


def test_http_request_carries_basic_auth_and_host() -> None:
    seen: list[bytes] = []

    def handler(conn: socket.socket, stop: threading.Event) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(4096)
        seen.append(data)
        conn.sendall(b"HTTP/1.0 200 OK\r\n\r\n")

    with LoopbackServer(handler) as server:
        dep = parse_url(f"http://me:pw@127.0.0.1:{server.port}/h?x=1", "ENTRYPOINT_HEALTH_URL")
        assert probe(dep, timeout=PROBE_TIMEOUT) == "HTTP 200 OK"
    request = seen[0].decode()
    assert request.startswith("GET /h?x=1 HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{server.port}\r\n" in request
    assert "Authorization: Basic bWU6cHc=\r\n" in request


def test_beanstalkd_stats() -> None:
    body = b'---\ncurrent-jobs-urgent: 0\nversion: "1.13"\n'
    reply = b"OK %d\r\n" % len(body) + body + b"\r\n"
    with LoopbackServer(scripted((b"stats\r\n", reply))) as server:
        dep = parse_url(f"beanstalkd://127.0.0.1:{server.port}", "QUEUE_URL")
        assert probe(dep, timeout=PROBE_TIMEOUT) == "beanstalkd 1.13 ready"


def test_sqlserver_prelogin() -> None:
    # A PRELOGIN answer: VERSION 16.0.1000, ENCRYPTION off.
    options = struct.pack(">BHH", 0, 11, 6) + struct.pack(">BHH", 1, 17, 1) + b"\xff"
    payload = options + struct.pack(">BBHH", 16, 0, 1000, 0) + b"\x02"
    answer = struct.pack(">BBHHBB", 0x04, 0x01, 8 + len(payload), 0, 1, 0) + payload
    with LoopbackServer(scripted((prelogin_packet()[:8], answer))) as server:
        dep = parse_url(f"sqlserver://127.0.0.1:{server.port}", "QUEUE_URL")
        assert probe(dep, timeout=PROBE_TIMEOUT) == "SQL Server 16.0.1000 ready"


def test_amqp_other_version_is_permanent() -> None:
    with LoopbackServer(scripted((b"AMQP", b"AMQP\x00\x01\x00\x00"))) as server:
        dep = parse_url(f"amqp://127.0.0.1:{server.port}", "QUEUE_URL")
        with pytest.raises(ProbeError) as caught:
            probe(dep, timeout=PROBE_TIMEOUT)
    assert str(caught.value) == "the server speaks AMQP 1-0-0, not 0-9-1"
    assert caught.value.permanent


@pytest.mark.parametrize(
    ("reply", "permanent"),
    [
        (b"-ERR 'Authorization Violation'\r\n", True),
        (b"-ERR 'Authentication Timeout'\r\n", False),
    ],
)
def test_nats_errors_after_connect(reply: bytes, permanent: bool) -> None:
    info = b'INFO {"server_id":"x","version":"2.10.0","auth_required":true}\r\n'
    with LoopbackServer(scripted((None, info), (b"CONNECT ", reply))) as server:
        dep = parse_url(f"nats://u:p@127.0.0.1:{server.port}", "QUEUE_URL")
        with pytest.raises(ProbeError) as caught:
            probe(dep, timeout=PROBE_TIMEOUT)
    assert caught.value.permanent is permanent


def test_postgres_starting_up_is_transient() -> None:
    fields = b"SFATAL\0C57P03\0Mthe database system is starting up\0\0"
    error = b"E" + struct.pack(">I", 4 + len(fields)) + fields
    with LoopbackServer(scripted((None, b"N"), (None, error))) as server:
        dep = parse_url(f"postgresql://app@127.0.0.1:{server.port}/app", "QUEUE_URL")
        with pytest.raises(ProbeError) as caught:
            probe(dep, timeout=PROBE_TIMEOUT)
    assert str(caught.value) == "the database system is starting up (SQLSTATE 57P03)"
    assert not caught.value.permanent


def test_mysql_too_many_connections_is_transient() -> None:
    payload = b"\xff" + (1040).to_bytes(2, "little") + b"Too many connections"
    packet = len(payload).to_bytes(3, "little") + b"\0" + payload
    with LoopbackServer(scripted((None, packet))) as server:
        dep = parse_url(f"mysql://root@127.0.0.1:{server.port}/app", "QUEUE_URL")
        with pytest.raises(ProbeError) as caught:
            probe(dep, timeout=PROBE_TIMEOUT)
    assert str(caught.value) == "Too many connections (error 1040)"
    assert not caught.value.permanent


# -- SQLite: real files -------------------------------------------------------------------


def sqlite_dep(path: Path | str) -> Dependency:
    return parse_url(f"sqlite://{path}", "QUEUE_URL")


def test_sqlite_database_is_ready(tmp_path: Path) -> None:
    path = tmp_path / "queue.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE jobs (id INTEGER PRIMARY KEY)")
    db.close()
    assert probe(sqlite_dep(path), timeout=1) == f"{path}: SQLite database"


def test_sqlite_file_to_be_created(tmp_path: Path) -> None:
    detail = probe(sqlite_dep(tmp_path / "new.sqlite"), timeout=1)
    assert detail.endswith("does not exist yet; its directory is writable (it will be created)")
    (tmp_path / "empty.sqlite").touch()
    assert probe(sqlite_dep(tmp_path / "empty.sqlite"), timeout=1).endswith(
        "empty file (a new SQLite database)"
    )


def test_sqlite_relative_path_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "database").mkdir()
    sqlite3.connect(tmp_path / "database" / "database.sqlite").execute(
        "CREATE TABLE t (x)"
    ).connection.close()
    monkeypatch.chdir(tmp_path)
    dep = parse_url("sqlite:database/database.sqlite", "QUEUE_URL")
    assert probe(dep, timeout=1) == "database/database.sqlite: SQLite database"


def test_sqlite_not_a_database_is_permanent(tmp_path: Path) -> None:
    path = tmp_path / "queue.sqlite"
    path.write_text("definitely not sqlite")
    with pytest.raises(ProbeError) as caught:
        probe(sqlite_dep(path), timeout=1)
    assert caught.value.permanent
    assert "is not a SQLite database (it starts with 'definitely not s')" in str(caught.value)


def test_sqlite_missing_directory_is_transient(tmp_path: Path) -> None:
    with pytest.raises(ProbeError) as caught:
        probe(sqlite_dep(tmp_path / "later" / "queue.sqlite"), timeout=1)
    assert not caught.value.permanent
    assert "nor does its directory" in str(caught.value)


def test_sqlite_directory_is_permanent(tmp_path: Path) -> None:
    with pytest.raises(ProbeError) as caught:
        probe(sqlite_dep(tmp_path), timeout=1)
    assert caught.value.permanent
