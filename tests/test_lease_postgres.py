"""The PostgreSQL lease against the real server: advisory locks held by a session."""

from __future__ import annotations

import contextlib
import itertools
import socket
import sys
import threading
import time
import uuid
from typing import TYPE_CHECKING

import pytest

from entrypoint.errors import ConfigError
from entrypoint.lease import LeaseUnavailable, default_holder, open_lease
from entrypoint.plan.urls import Dependency, parse_url
from tests.helpers import wait_until
from tests.servers import require_server
from tests.tcp_proxy import TcpProxy

if TYPE_CHECKING:
    from collections.abc import Iterator

    from entrypoint.lease.postgres import PostgresLease

pytestmark = pytest.mark.server("postgresql")

USER, DATABASE = "postgres", "test"


@pytest.fixture
def pg() -> tuple[str, int]:
    return require_server("postgresql")


@pytest.fixture
def key(pg: tuple[str, int]) -> Iterator[str]:
    name = f"test:lease:{uuid.uuid4().hex}"
    yield name
    with contextlib.suppress(Exception):  # the token table may not exist (yet)
        sql(pg, f"DELETE FROM entrypoint_lease_tokens WHERE key LIKE '{name}%'")  # noqa: S608


OPENED: list[PostgresLease] = []


@pytest.fixture(autouse=True)
def _close_leases() -> Iterator[None]:
    yield
    while OPENED:
        OPENED.pop().close()


def url_of(address: tuple[str, int], query: str = "") -> str:
    return f"postgresql://{USER}@{address[0]}:{address[1]}/{DATABASE}{query}"


def dep(url: str) -> Dependency:
    return parse_url(url, "ENTRYPOINT_LEASE_URL")


def lease(url: str, key: str, ttl: float = 5, timeout: float = 1) -> PostgresLease:
    from entrypoint.lease.postgres import PostgresLease

    made = open_lease(dep(url), key, ttl, holder=default_holder(), timeout=timeout)
    assert isinstance(made, PostgresLease)
    OPENED.append(made)
    return made


def sql(address: tuple[str, int], query: str) -> list[tuple[object, ...]]:
    import psycopg

    with psycopg.connect(url_of(address), autocommit=True, connect_timeout=5) as conn:
        cursor = conn.execute(query)
        return list(cursor.fetchall()) if cursor.description is not None else []


def holders_of(address: tuple[str, int], lock: int) -> list[int]:
    high, low = (lock >> 32) & 0xFFFFFFFF, lock & 0xFFFFFFFF
    rows = sql(
        address,
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"  # noqa: S608
        f" AND classid = {high} AND objid = {low} AND objsubid = 1",
    )
    return [int(str(row[0])) for row in rows]


def backend_pid(holder: PostgresLease) -> int:
    session = holder._session
    assert session is not None
    return session.backend_pid


def test_three_holders_racing_exactly_one_acquires(pg: tuple[str, int], key: str) -> None:
    # A generous timeout: this is about the race, not about a loaded machine.
    holders = [lease(url_of(pg), key, timeout=10) for _ in range(3)]
    barrier = threading.Barrier(3)
    results: dict[int, bool | str] = {}

    def race(index: int) -> None:
        barrier.wait()
        try:
            results[index] = holders[index].acquire()
        except LeaseUnavailable as exc:
            results[index] = str(exc)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert sorted(map(str, results.values())) == ["False", "False", "True"], results
    winner = holders[next(i for i, won in results.items() if won is True)]
    assert holders_of(pg, winner.lock_id) == [backend_pid(winner)]
    assert [h.renew() for h in holders].count(True) == 1
    assert winner.acquire(), "acquire by the holder again is True"


def test_tokens_strictly_grow_across_twenty_leader_changes(pg: tuple[str, int], key: str) -> None:
    ttl = 1.0  # idle_session_timeout: a silent leader's session ends one TTL after its last query
    holders = [lease(url_of(pg), key, ttl=ttl, timeout=2) for _ in range(3)]
    tokens: list[int] = []
    leader: PostgresLease | None = None
    for change in range(20):
        successor = holders[change % 3]
        if leader is not None and change % 5 == 0:
            # The leader goes silent: the server ends its session after the TTL.
            assert wait_until(successor.acquire, timeout=ttl + 3)
            assert not leader.renew(), "the expired leader knows it lost"
        elif leader is not None and change % 5 == 1:
            sql(pg, f"SELECT pg_terminate_backend({backend_pid(leader)})")  # a crash
            assert wait_until(successor.acquire, timeout=3)
            assert not leader.renew()
        else:
            if leader is not None:
                leader.release()
            assert successor.acquire()
        assert leader is None or leader.token is None
        token = successor.token
        assert token is not None
        for other in holders:
            if other is not successor:
                assert not other.acquire()
                assert other.token is None
        assert successor.acquire(), "acquire again by the holder"
        assert successor.token == token, "keeps the token"
        tokens.append(token)
        leader = successor
    assert all(later > earlier for earlier, later in itertools.pairwise(tokens))
    # One increment per new leader: failed attempts and re-acquires draw none.
    assert tokens[-1] - tokens[0] == 19
    rows = sql(pg, f"SELECT token FROM entrypoint_lease_tokens WHERE key = '{key}'")  # noqa: S608
    assert rows == [(tokens[-1],)]


@pytest.fixture
def schema(pg: tuple[str, int]) -> Iterator[str]:
    """A schema of this test's own, first on the lease's search_path, dropped afterwards."""
    name = f"test_lease_{uuid.uuid4().hex[:12]}"
    sql(pg, f"CREATE SCHEMA {name}")
    yield name
    sql(pg, f"DROP SCHEMA {name} CASCADE")


def in_schema(pg: tuple[str, int], schema: str) -> str:
    return url_of(pg, f"?options=-csearch_path%3D{schema}")


def test_the_token_table_is_created_when_missing(
    pg: tuple[str, int], key: str, schema: str
) -> None:
    first = lease(in_schema(pg, schema), key)
    assert first.acquire()
    assert first.token == 1
    rows = sql(pg, f"SELECT key, token FROM {schema}.entrypoint_lease_tokens")  # noqa: S608
    assert rows == [(key, 1)]
    first.release()
    second = lease(in_schema(pg, schema), key)
    assert second.acquire()
    assert second.token == 2


def test_no_token_no_leader_and_the_lock_is_freed(
    pg: tuple[str, int], key: str, schema: str
) -> None:
    # A table of that name the token cannot be kept in (no unique key).
    sql(pg, f"CREATE TABLE {schema}.entrypoint_lease_tokens (key text, token bigint)")
    holder = lease(in_schema(pg, schema), key)
    with pytest.raises(LeaseUnavailable, match="cannot draw the fencing token") as caught:
        holder.acquire()
    assert "\n" not in str(caught.value)
    assert holder.token is None
    assert holders_of(pg, holder.lock_id) == []


@pytest.mark.parametrize("suffix", ["neg:0", "pos:0"])  # a negative and a positive lock id
def test_renew_checks_the_session_still_holds_the_lock(
    pg: tuple[str, int], key: str, suffix: str
) -> None:
    holder = lease(url_of(pg), f"{key}:{suffix}")
    assert not holder.renew(), "never acquired: nothing to renew"
    assert holder.acquire()
    assert holder.renew()
    assert holder.renew()
    sql(pg, f"SELECT pg_terminate_backend({backend_pid(holder)})")
    assert not holder.renew(), "the session that held the lock is gone"


def test_another_holder_cannot_renew_or_release(pg: tuple[str, int], key: str) -> None:
    owner, other = lease(url_of(pg), key), lease(url_of(pg), key)
    assert owner.acquire()
    assert not other.acquire()
    assert not other.renew()
    other.release()
    assert holders_of(pg, owner.lock_id) == [backend_pid(owner)]
    assert owner.renew()


def test_release_lets_another_acquire_at_once(pg: tuple[str, int], key: str) -> None:
    owner, other = lease(url_of(pg), key), lease(url_of(pg), key)
    assert owner.acquire()
    owner.release()
    assert other.acquire()
    assert not owner.renew()


def test_killing_the_leaders_connection_frees_the_lock(pg: tuple[str, int], key: str) -> None:
    owner, other = lease(url_of(pg), key), lease(url_of(pg), key)
    assert owner.acquire()
    assert not other.acquire()
    sql(pg, f"SELECT pg_terminate_backend({backend_pid(owner)})")
    assert wait_until(other.acquire, timeout=2)
    assert not owner.renew()
    assert not owner.acquire()


def test_a_dead_leader_process_frees_the_lock(pg: tuple[str, int], key: str) -> None:
    import subprocess

    code = (
        "import sys; from entrypoint.lease import open_lease\n"
        "from entrypoint.plan.urls import parse_url\n"
        f"lease = open_lease(parse_url({url_of(pg)!r}, 'X'), {key!r}, 5, holder='c', timeout=2)\n"
        "print(lease.acquire(), flush=True); sys.stdin.read()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "True"
        other = lease(url_of(pg), key)
        assert not other.acquire()
        child.kill()
        child.wait(5)
        started = time.monotonic()
        assert wait_until(other.acquire, timeout=2)
        assert time.monotonic() - started < 1
    finally:
        child.kill()
        child.wait(5)
        assert child.stdin is not None
        child.stdin.close()
        assert child.stdout is not None
        child.stdout.close()


def test_a_standby_connection_ended_by_the_server_is_replaced(
    pg: tuple[str, int], key: str
) -> None:
    owner, standby = lease(url_of(pg), key), lease(url_of(pg), key)
    assert owner.acquire()
    assert not standby.acquire()
    sql(pg, f"SELECT pg_terminate_backend({backend_pid(standby)})")
    assert not standby.acquire(), "a new connection, and still not the holder"
    owner.release()
    assert standby.acquire()


def test_partition_renew_raises_and_the_server_frees_the_lock_after_the_ttl(
    pg: tuple[str, int], key: str
) -> None:
    ttl = 2.0
    with TcpProxy(pg) as proxy:
        owner = lease(proxy.url("postgresql", f"/{DATABASE}", USER), key, ttl=ttl, timeout=0.4)
        other = lease(url_of(pg), key, ttl=ttl)
        assert owner.acquire()
        assert owner.renew()
        last_renewed = time.monotonic()
        proxy.cut()
        started = time.monotonic()
        with pytest.raises(LeaseUnavailable, match="timed out"):
            owner.renew()
        assert time.monotonic() - started < 0.4 + 0.3
        assert not other.acquire(), "the partitioned leader's session still holds the lock"
        assert wait_until(other.acquire, timeout=ttl + 3)
        freed_after = time.monotonic() - last_renewed
        # idle_session_timeout = ttl: never before the TTL, soon after it.
        assert ttl - 0.1 <= freed_after <= ttl + 1.5, freed_after
        proxy.restore()
        assert not owner.renew(), "the server ended the leader's session"


def test_a_partition_shorter_than_the_ttl_keeps_the_lease(pg: tuple[str, int], key: str) -> None:
    with TcpProxy(pg) as proxy:
        owner = lease(proxy.url("postgresql", f"/{DATABASE}", USER), key, ttl=5, timeout=0.3)
        assert owner.acquire()
        proxy.cut()
        with pytest.raises(LeaseUnavailable):
            owner.renew()
        with pytest.raises(LeaseUnavailable):
            owner.renew()
        proxy.restore()
        assert owner.renew(), "the queries in flight arrive, the session and the lock live on"
        assert holders_of(pg, owner.lock_id) == [backend_pid(owner)]


def test_release_during_a_partition_is_bounded(pg: tuple[str, int], key: str) -> None:
    with TcpProxy(pg) as proxy:
        owner = lease(proxy.url("postgresql", f"/{DATABASE}", USER), key, timeout=0.3)
        assert owner.acquire()
        proxy.cut()
        started = time.monotonic()
        owner.release()
        assert time.monotonic() - started < 0.3 + 0.3
        proxy.restore()
        other = lease(url_of(pg), key)
        # The proxy passes the close on once restored: the lock is freed then.
        assert wait_until(other.acquire, timeout=3)


def test_silent_server_is_unavailable_within_the_timeout(pg: tuple[str, int], key: str) -> None:
    with TcpProxy(pg) as proxy:
        proxy.cut()
        holder = lease(proxy.url("postgresql", f"/{DATABASE}", USER), key, timeout=0.5)
        started = time.monotonic()
        with pytest.raises(LeaseUnavailable, match="timed out") as caught:
            holder.acquire()
        assert time.monotonic() - started < 0.5 + 0.3
        assert not caught.value.permanent


def test_session_settings_are_in_force(pg: tuple[str, int], key: str) -> None:
    holder = lease(url_of(pg), key, ttl=9)
    assert holder.acquire()
    rows = sql(
        pg,
        f"SELECT application_name FROM pg_stat_activity WHERE pid = {backend_pid(holder)}",  # noqa: S608
    )
    assert str(rows[0][0]).startswith(f"entrypoint lease {holder.holder}"[:30])
    session = holder._session
    assert session is not None
    settings = session.query(
        "SELECT current_setting('idle_session_timeout'), current_setting('tcp_keepalives_idle'),"
        " current_setting('tcp_keepalives_count')",
        time.monotonic() + 2,
    )
    assert settings == [["9s", "3", "2"]]


def test_unreachable_is_unavailable_and_redacted() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    holder = lease(f"postgresql://u:sekrit99@127.0.0.1:{port}/test", "k")
    with pytest.raises(LeaseUnavailable, match="refused") as caught:
        holder.acquire()
    assert "sekrit99" not in str(caught.value)
    assert not caught.value.permanent


def test_unknown_database_is_permanent(pg: tuple[str, int]) -> None:
    holder = lease(f"postgres://{USER}@{pg[0]}:{pg[1]}/no_such_db_here", "k")
    with pytest.raises(LeaseUnavailable, match="does not exist") as caught:
        holder.acquire()
    assert caught.value.permanent


def test_lock_id_is_stable_and_signed() -> None:
    from entrypoint.lease.postgres import lock_id

    assert lock_id("entrypoint:lease:scheduler") == lock_id("entrypoint:lease:scheduler")
    assert lock_id("entrypoint:lease:scheduler") == 3122628621094269042
    assert lock_id("a") != lock_id("b")
    assert all(-(2**63) <= lock_id(str(n)) < 2**63 for n in range(200))


def test_keepalives_notice_a_dead_peer_within_the_ttl() -> None:
    from entrypoint.lease.postgres import keepalive_settings, session_settings

    for ttl in (1, 3, 5, 15, 60, 600):
        idle, interval, count = keepalive_settings(ttl)
        assert idle + interval * count <= max(ttl, 3)
    assert "idle_session_timeout = 15000" in session_settings(15, 150000)
    assert "idle_session_timeout" not in session_settings(15, 130000)
    assert "tcp_user_timeout" not in session_settings(15, 110000)


def test_the_connection_is_built_from_the_dependency_fields() -> None:
    from psycopg.conninfo import conninfo_to_dict

    from entrypoint.lease.postgres import build_conninfo

    url = "postgres://us%40er:Zx9?Se'cr=t@db.example:6543/app%20db?sslmode=require&charset=x"
    info = conninfo_to_dict(build_conninfo(dep(url), 15, "entrypoint lease h"))
    assert {k: info[k] for k in ("host", "port", "user", "password", "dbname", "sslmode")} == {
        "host": "db.example",
        "port": "6543",
        "user": "us@er",
        "password": "Zx9?Se'cr=t",
        "dbname": "app db",
        "sslmode": "require",
    }
    assert "charset" not in info, "an option meant for the application is not libpq's"
    assert info["application_name"] == "entrypoint lease h"
    bare = conninfo_to_dict(build_conninfo(dep("postgresql://[::1]"), 15, "x"))
    assert (bare["host"], bare["port"], bare["user"], bare["dbname"]) == (
        "::1", "5432", "postgres", "postgres",
    )  # fmt: skip
    assert "password" not in bare


def test_a_bad_sslmode_is_a_config_error_without_the_password() -> None:
    with pytest.raises(ConfigError, match="sslmode='sometimes'") as caught:
        open_lease(
            dep("postgresql://u:sekrit99@h/db?sslmode=sometimes"), "k", 5, holder="h", timeout=1
        )
    assert "sekrit99" not in str(caught.value)


def test_a_password_with_a_question_mark_never_shows() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    holder = lease(f"postgresql://u:Zx9?Secret@127.0.0.1:{port}/test", "k")
    with pytest.raises(LeaseUnavailable, match="refused") as caught:
        holder.acquire()
    assert "Zx9" not in str(caught.value)
    assert f"postgresql://u:***@127.0.0.1:{port}/test" in str(caught.value)


def test_without_psycopg_it_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    monkeypatch.delitem(sys.modules, "entrypoint.lease.postgres", raising=False)
    with pytest.raises(ConfigError, match=r"needs psycopg.*entrypoint\[postgres\]") as caught:
        open_lease(dep("postgresql://u:sekrit99@h/db"), "k", 5, holder="h", timeout=1)
    assert "sekrit99" not in str(caught.value)


def test_open_does_no_io() -> None:
    server = socket.create_server(("127.0.0.1", 0), backlog=8)
    server.setblocking(False)  # noqa: FBT003 - socket's own API

    def accepted() -> int:
        count = 0
        while True:
            try:
                conn, _ = server.accept()
            except BlockingIOError:
                return count
            conn.close()
            count += 1

    with server:
        port = server.getsockname()[1]
        holder = lease(f"postgresql://u@127.0.0.1:{port}/db", "k", timeout=0.3)
        assert accepted() == 0
        # Control: the first call does connect, and the count sees it.
        with pytest.raises(LeaseUnavailable, match="timed out"):
            holder.acquire()
        assert wait_until(lambda: accepted() == 1, timeout=2)
