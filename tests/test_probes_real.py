"""Probes against the real servers of this machine, and private ones started here."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest
from structlog.testing import capture_logs

from entrypoint.errors import UnavailableError
from entrypoint.plan import urls
from entrypoint.plan.urls import Dependency, Depth, parse_url
from entrypoint.probes import ProbeError, probe
from entrypoint.probes.resp import RedisConnection
from entrypoint.runtime.waiting import check, wait_for
from tests.helpers import wait_until
from tests.probe_helpers import FakeInbox, accepts, free_port, process, require_binary
from tests.servers import missing, require_server

TIMEOUT = 2.0


def ready(url: str) -> tuple[Dependency, str]:
    dep = parse_url(url, "QUEUE_URL")
    return dep, probe(dep, timeout=TIMEOUT)


def refused_at_once(url: str, secret: str | None = None) -> str:
    """wait_for with a 10 s deadline must end with 69 in well under a second or two."""
    dep = parse_url(url, "QUEUE_URL")
    began = time.monotonic()
    with capture_logs() as logs, pytest.raises(UnavailableError) as caught:
        wait_for([dep], timeout=10, probe_timeout=TIMEOUT, inbox=FakeInbox())
    assert time.monotonic() - began < 2.0
    message = str(caught.value)
    assert caught.value.exit_code == 69
    assert "refused (permanent, not retried)" in message
    if secret is not None:
        assert secret not in message
        assert secret not in repr(logs)
    assert [e["event"] for e in logs] == ["dependency_failed"]
    return message


def permanent(url: str) -> str:
    with pytest.raises(ProbeError) as caught:
        probe(parse_url(url, "QUEUE_URL"), timeout=TIMEOUT)
    assert caught.value.permanent, caught.value
    return str(caught.value)


# -- Redis -------------------------------------------------------------------------------


@pytest.fixture
def redis_user() -> Iterator[tuple[str, str]]:
    host, port = require_server("redis")
    user, password = f"probe-{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}"
    with RedisConnection(host, port, timeout=5) as admin:
        admin.command("ACL", "SETUSER", user, "on", f">{password}", "~*", "&*", "+@all")
    try:
        yield user, password
    finally:
        with RedisConnection(host, port, timeout=5) as admin:
            admin.command("ACL", "DELUSER", user)


def test_redis_ready() -> None:
    host, port = require_server("redis")
    dep, detail = ready(f"redis://{host}:{port}/0")
    assert (detail, dep.depth) == ("PONG", Depth.HANDSHAKE)


def test_redis_acl_user_is_authenticated(redis_user: tuple[str, str]) -> None:
    user, password = redis_user
    dep, detail = ready(f"redis://{user}:{password}@127.0.0.1:6379/1")
    assert (detail, dep.depth) == ("PONG", Depth.AUTHENTICATED)


def test_redis_wrong_password_ends_the_wait_at_once(redis_user: tuple[str, str]) -> None:
    user, _ = redis_user
    message = refused_at_once(f"redis://{user}:Wr0ng-Passw0rd@127.0.0.1:6379", "Wr0ng-Passw0rd")
    assert f"redis://{user}:***@127.0.0.1:6379" in message
    assert "WRONGPASS" in message


def test_redis_unknown_database_is_permanent() -> None:
    require_server("redis")
    assert "DB index is out of range" in permanent("redis://127.0.0.1:6379/999")


@pytest.fixture(scope="module")
def private_redis() -> Iterator[int]:
    """A redis-server that requires a password (NOAUTH for whoever has none)."""
    binary = require_binary("redis-server")
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
            "no", "--requirepass", "Priv4te-pw"]  # fmt: skip
    with process(argv, ready=lambda: accepts(port)):
        yield port


def test_redis_noauth_is_permanent(private_redis: int) -> None:
    message = permanent(f"redis://127.0.0.1:{private_redis}")
    assert message.startswith("PING refused: NOAUTH")
    assert ready(f"redis://:Priv4te-pw@127.0.0.1:{private_redis}")[1] == "PONG"


def test_redis_started_later_is_ready() -> None:
    binary = require_binary("redis-server")
    port = free_port()
    dep = parse_url(f"redis://127.0.0.1:{port}/0", "QUEUE_URL")
    outcome: list[bool] = []
    began = time.monotonic()
    with capture_logs() as logs:
        waiter = threading.Thread(
            target=lambda: outcome.append(
                wait_for([dep], timeout=20, probe_timeout=0.5, inbox=FakeInbox())
            ),
            daemon=True,
        )
        waiter.start()
        assert wait_until(lambda: any(e["event"] == "dependency_waiting" for e in logs), 5)
        # The server comes up 2 s after the wait began.
        assert wait_until(lambda: time.monotonic() - began >= 2.0, 5)
        argv = [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        with process(argv, ready=lambda: accepts(port)):
            waiter.join(15)
    assert outcome == [True]
    events = [e["event"] for e in logs]
    assert events[0] == "dependency_waiting"
    assert events[-1] == "dependency_ready"
    assert logs[0]["reason"] == f"connection refused by 127.0.0.1:{port}"
    assert logs[-1]["attempts"] >= 2


# -- PostgreSQL --------------------------------------------------------------------------


def test_postgres_ready() -> None:
    host, port = require_server("postgresql")
    dep, detail = ready(f"postgresql://postgres@{host}:{port}/test")
    assert detail.startswith("PostgreSQL ")
    assert detail.endswith(" ready")
    assert dep.depth is Depth.HANDSHAKE
    assert ready(f"postgres://postgres@{host}:{port}/test?sslmode=disable")[1] == detail


def test_postgres_unknown_database_ends_the_wait_at_once() -> None:
    require_server("postgresql")
    message = refused_at_once("postgresql://postgres@127.0.0.1:5432/no_such_db")
    assert message.endswith('database "no_such_db" does not exist (SQLSTATE 3D000)')


def test_postgres_unknown_role_is_permanent() -> None:
    require_server("postgresql")
    message = permanent("postgresql://no_such_role@127.0.0.1:5432/test")
    assert message == 'role "no_such_role" does not exist (SQLSTATE 28000)'


PG_PASSWORD = "Scr4m-S3cret"


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[int]:
    """A PostgreSQL of our own that asks for a scram-sha-256 password (the shared one
    trusts every local connection, so it cannot show a wrong password)."""
    initdb, pg_ctl = require_binary("initdb"), require_binary("pg_ctl")
    as_user: list[str] = []
    directory = Path(tempfile.mkdtemp(prefix="entrypoint-pg-"))
    try:
        if os.geteuid() == 0:  # initdb refuses root: run it as the postgres user
            runuser = shutil.which("runuser")
            try:
                import pwd

                pwd.getpwnam("postgres")
            except KeyError:
                runuser = None
            if runuser is None:
                missing("running as root without runuser or a postgres user: cannot run initdb")
            as_user = [str(runuser), "-u", "postgres", "--"]
            shutil.chown(directory, "postgres", "postgres")
        password_file = directory / "pw"
        password_file.write_text(PG_PASSWORD + "\n")
        if as_user:
            shutil.chown(password_file, "postgres", "postgres")
        data = directory / "data"
        subprocess.run(
            [*as_user, initdb, "-D", str(data), "-U", "postgres", "--auth=scram-sha-256",
             f"--pwfile={password_file}", "--no-sync", "-E", "UTF8"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        port = free_port()
        options = f"-p {port} -k {directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            [*as_user, pg_ctl, "-D", str(data), "-o", options, "-l", str(directory / "log"),
             "-w", "-t", "30", "start"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        try:
            yield port
        finally:
            subprocess.run(
                [*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"],
                capture_output=True, timeout=30, check=False,
            )  # fmt: skip
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_postgres_password_is_authenticated(private_postgres: int) -> None:
    dep, detail = ready(
        f"postgresql://postgres:{PG_PASSWORD}@127.0.0.1:{private_postgres}/postgres"
    )
    assert dep.depth is Depth.AUTHENTICATED
    assert detail.startswith("PostgreSQL 15.")
    assert detail.endswith(": SELECT 1 as postgres")


def test_postgres_wrong_password_ends_the_wait_at_once(private_postgres: int) -> None:
    url = f"postgresql://postgres:N0t-the-pw@127.0.0.1:{private_postgres}/postgres"
    message = refused_at_once(url, "N0t-the-pw")
    assert message.endswith('password authentication failed for user "postgres" (SQLSTATE 28P01)')


def test_postgres_asking_for_a_password_is_up_at_handshake_depth(
    private_postgres: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    dep, detail = ready(f"postgresql://postgres@127.0.0.1:{private_postgres}/postgres")
    assert (dep.depth, detail) == (Depth.HANDSHAKE, "PostgreSQL up (asks for SASL (SCRAM))")
    monkeypatch.setattr(urls, "driver_available", lambda _name: False)  # psycopg absent
    dep, detail = ready(f"postgresql://postgres:wrong@127.0.0.1:{private_postgres}/postgres")
    assert (dep.depth, detail) == (
        Depth.HANDSHAKE,
        (
            "PostgreSQL up (asks for SASL (SCRAM)); "
            "credentials not verified: install entrypoint[postgres]"
        ),
    )  # the wrong password could not be checked, and the detail says so


def test_postgres_sslmode_require_without_ssl_is_permanent(private_postgres: int) -> None:
    url = f"postgresql://postgres@127.0.0.1:{private_postgres}/postgres?sslmode=require"
    assert permanent(url) == "the server does not accept SSL (sslmode=require)"


# -- MariaDB -----------------------------------------------------------------------------


@pytest.fixture
def mariadb_user() -> Iterator[tuple[str, str]]:
    host, port = require_server("mariadb")
    user, password = f"probe_{uuid.uuid4().hex[:8]}", f"Pw-{uuid.uuid4().hex}"
    admin = pymysql.connect(host=host, port=port, user="root", password="")
    try:
        with admin.cursor() as cursor:
            cursor.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (user, password))
            cursor.execute("GRANT ALL ON test.* TO %s@'%%'", (user,))
        yield user, password
    finally:
        with admin.cursor() as cursor:
            cursor.execute("DROP USER IF EXISTS %s@'%%'", (user,))
        admin.close()


def test_mariadb_root_is_authenticated() -> None:
    host, port = require_server("mariadb")
    dep, detail = ready(f"mysql://root@{host}:{port}/test")
    assert dep.depth is Depth.AUTHENTICATED
    assert detail.startswith("MariaDB ")
    assert detail.endswith(": SELECT 1 as root")


def test_mariadb_handshake_only() -> None:
    require_server("mariadb")
    dep, detail = ready("mariadb://127.0.0.1:3306")
    assert dep.depth is Depth.HANDSHAKE
    assert detail.startswith("MariaDB 1")
    assert detail.endswith(" ready")


def test_mariadb_user_with_password(mariadb_user: tuple[str, str]) -> None:
    user, password = mariadb_user
    _, detail = ready(f"mysql://{user}:{password}@127.0.0.1:3306/test")
    assert detail.endswith(f": SELECT 1 as {user}")


def test_mariadb_wrong_password_ends_the_wait_at_once(mariadb_user: tuple[str, str]) -> None:
    user, _ = mariadb_user
    message = refused_at_once(f"mysql://{user}:Wr0ng-pw-123@127.0.0.1:3306/test", "Wr0ng-pw-123")
    assert message.endswith(
        tuple(
            f"Access denied for user '{user}'@'{host}' (with a password) (error 1045)"
            for host in ("localhost", "127.0.0.1")
        )
    )


def test_mariadb_unknown_database_ends_the_wait_at_once(mariadb_user: tuple[str, str]) -> None:
    user, password = mariadb_user
    message = refused_at_once(f"mysql://root@127.0.0.1:3306/no_such_db_{user}")
    assert message.endswith(f"Unknown database 'no_such_db_{user}' (error 1049)")
    del password


# -- RabbitMQ ----------------------------------------------------------------------------


def test_rabbitmq_guest_opens_the_vhost() -> None:
    host, port = require_server("rabbitmq")
    dep, detail = ready(f"amqp://guest:guest@{host}:{port}/")
    assert dep.depth is Depth.AUTHENTICATED
    assert detail.startswith("RabbitMQ ")
    assert detail.endswith(": vhost '/' open")


def test_rabbitmq_without_credentials_is_a_handshake() -> None:
    host, port = require_server("rabbitmq")
    dep, detail = ready(f"amqp://{host}:{port}")
    assert dep.depth is Depth.HANDSHAKE
    assert detail.startswith("RabbitMQ ")
    assert detail.endswith(" ready")


def test_rabbitmq_wrong_password_ends_the_wait_at_once() -> None:
    require_server("rabbitmq")
    message = refused_at_once("amqp://guest:Wr0ng-guest@127.0.0.1:5672/", "Wr0ng-guest")
    assert "ACCESS_REFUSED" in message
    assert message.endswith("(reply code 403)")


def test_rabbitmq_unknown_vhost_ends_the_wait_at_once() -> None:
    require_server("rabbitmq")
    message = refused_at_once("amqp://guest:guest@127.0.0.1:5672/no-such-vhost")
    assert message.endswith("NOT_ALLOWED - vhost no-such-vhost not found (reply code 530)")


# -- NATS --------------------------------------------------------------------------------


def test_nats_ready() -> None:
    host, port = require_server("nats")
    dep, detail = ready(f"nats://{host}:{port}")
    assert dep.depth is Depth.HANDSHAKE
    assert detail.startswith("NATS 2.")
    assert detail.endswith(" ready")


@pytest.fixture(scope="module")
def private_nats() -> Iterator[int]:
    binary = require_binary("nats-server")
    port = free_port()
    argv = [binary, "-a", "127.0.0.1", "-p", str(port), "--user", "probe", "--pass", "N4ts-pw"]
    with process(argv, ready=lambda: accepts(port)):
        yield port


def test_nats_credentials(private_nats: int) -> None:
    dep, detail = ready(f"nats://probe:N4ts-pw@127.0.0.1:{private_nats}")
    assert dep.depth is Depth.AUTHENTICATED
    assert detail.startswith("NATS 2.")
    assert detail.endswith(": PONG")
    _, detail = ready(f"nats://127.0.0.1:{private_nats}")
    assert detail.endswith(" ready (requires authentication)")


def test_nats_wrong_password_ends_the_wait_at_once(private_nats: int) -> None:
    message = refused_at_once(f"nats://probe:Wr0ng-nats@127.0.0.1:{private_nats}", "Wr0ng-nats")
    assert message.endswith("the server said: Authorization Violation")


# -- all of them at once ---------------------------------------------------------------------


def test_check_all_servers_concurrently() -> None:
    for name in ("redis", "postgresql", "mariadb", "rabbitmq", "nats"):
        require_server(name)
    urls = [
        "redis://127.0.0.1:6379/0",
        "postgresql://postgres@127.0.0.1:5432/test",
        "mysql://root@127.0.0.1:3306/test",
        "amqp://guest:guest@127.0.0.1:5672/",
        "nats://127.0.0.1:4222",
        "tcp://127.0.0.1:6379",
        "postgresql://postgres@127.0.0.1:5432/missing_db",
    ]
    results = check([parse_url(u, "ENTRYPOINT_WAIT_FOR") for u in urls], probe_timeout=TIMEOUT)
    assert [r.ok for r in results] == [True] * 6 + [False]
    assert results[-1].permanent
    assert [r.depth for r in results][:6] == [
        Depth.HANDSHAKE,
        Depth.HANDSHAKE,
        Depth.AUTHENTICATED,
        Depth.AUTHENTICATED,
        Depth.HANDSHAKE,
        Depth.CONNECT,
    ]
