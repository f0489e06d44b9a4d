"""The Redis lease against the real Redis: one holder at a time, expiry, partition."""

from __future__ import annotations

import itertools
import shutil
import socket
import subprocess
import threading
import time
import uuid
from typing import TYPE_CHECKING

import pytest

from entrypoint.errors import ConfigError
from entrypoint.lease import LeaseUnavailable, default_holder, open_lease
from entrypoint.lease.redis import RedisLease, token_key
from entrypoint.plan.urls import Dependency, parse_url
from entrypoint.probes.resp import RedisConnection
from tests.helpers import wait_until
from tests.servers import missing, require_server
from tests.tcp_proxy import TcpProxy

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.server("redis")


@pytest.fixture
def redis() -> tuple[str, int]:
    return require_server("redis")


@pytest.fixture
def key(redis: tuple[str, int]) -> Iterator[str]:
    name = f"test:lease:{uuid.uuid4().hex}"
    yield name
    with RedisConnection(*redis, timeout=2) as conn:
        conn.command("DEL", name, token_key(name))


def url_of(address: tuple[str, int], db: int = 0) -> str:
    return f"redis://{address[0]}:{address[1]}/{db}"


def dep(url: str) -> Dependency:
    return parse_url(url, "ENTRYPOINT_LEASE_URL")


OPENED: list[RedisLease] = []


@pytest.fixture(autouse=True)
def _close_leases() -> Iterator[None]:
    yield
    while OPENED:
        OPENED.pop().close()


def lease(address: tuple[str, int], key: str, ttl: float = 5, timeout: float = 1) -> RedisLease:
    made = open_lease(dep(url_of(address)), key, ttl, holder=default_holder(), timeout=timeout)
    assert isinstance(made, RedisLease)
    OPENED.append(made)
    return made


def proxied(proxy: TcpProxy, key: str, timeout: float) -> RedisLease:
    made = RedisLease(dep(proxy.url("redis", "/0")), key, 5, holder="leader", timeout=timeout)
    OPENED.append(made)
    return made


def opened(url: str, key: str = "k") -> RedisLease:
    made = open_lease(dep(url), key, 5, holder="me", timeout=1)
    assert isinstance(made, RedisLease)
    OPENED.append(made)
    return made


def raw(address: tuple[str, int], *args: str | int) -> object:
    with RedisConnection(*address, timeout=2) as conn:
        return conn.command(*args)


def test_three_holders_racing_exactly_one_acquires(redis: tuple[str, int], key: str) -> None:
    for round_ in range(10):
        round_key = f"{key}:{round_}"
        holders = [lease(redis, round_key, timeout=10) for _ in range(3)]
        barrier = threading.Barrier(3)
        results: list[bool] = []

        def race(holder: RedisLease, barrier: threading.Barrier, results: list[bool]) -> None:
            barrier.wait()
            results.append(holder.acquire())

        threads = [threading.Thread(target=race, args=(h, barrier, results)) for h in holders]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(5)
        assert sorted(results) == [False, False, True]
        winner = next(h for h in holders if raw(redis, "GET", round_key) == h.holder.encode())
        assert [h.renew() for h in holders].count(True) == 1
        assert winner.renew()
        raw(redis, "DEL", round_key, token_key(round_key))
        for holder in holders:
            holder.close()


def test_tokens_strictly_grow_across_twenty_leader_changes(
    redis: tuple[str, int], key: str
) -> None:
    ttl = 0.5
    holders = [lease(redis, key, ttl=ttl, timeout=2) for _ in range(3)]
    tokens: list[int] = []
    leader: RedisLease | None = None
    for change in range(20):
        successor = holders[change % 3]
        if leader is not None and change % 3 == 0:
            # The leader goes silent: its key expires, then the successor takes over.
            assert wait_until(successor.acquire, timeout=ttl + 2)
            assert not leader.renew(), "the expired leader knows it lost"
            assert leader.token is None
        else:
            if leader is not None:
                leader.release()
            assert successor.acquire()
        token = successor.token
        assert token is not None
        for other in holders:
            if other is not successor:
                assert not other.acquire()
                assert other.token is None
        assert successor.acquire(), "acquire again by the holder"
        assert successor.token == token, "keeps the token"
        assert raw(redis, "GET", token_key(key)) == str(token).encode()
        tokens.append(token)
        leader = successor
    assert all(later > earlier for earlier, later in itertools.pairwise(tokens))
    # One INCR per new leader: failed attempts and re-acquires draw none.
    assert tokens[-1] - tokens[0] == 19


def test_the_token_outlives_the_lease(redis: tuple[str, int], key: str) -> None:
    first = lease(redis, key)
    assert first.acquire()
    assert first.token == 1
    first.release()
    assert raw(redis, "EXISTS", key) == 0
    assert raw(redis, "PTTL", token_key(key)) == -1, "the counter has no expiry"
    second = lease(redis, key)
    assert second.acquire()
    assert second.token == 2


def test_value_is_the_holder_and_ttl_is_set(redis: tuple[str, int], key: str) -> None:
    holder = lease(redis, key, ttl=5)
    assert holder.acquire()
    assert raw(redis, "GET", key) == holder.holder.encode()
    pttl = raw(redis, "PTTL", key)
    assert isinstance(pttl, int)
    assert 4000 < pttl <= 5000


def test_acquire_again_by_the_holder_is_true_and_extends(redis: tuple[str, int], key: str) -> None:
    holder = lease(redis, key, ttl=5)
    assert holder.acquire()
    raw(redis, "PEXPIRE", key, 300)
    assert holder.acquire()
    pttl = raw(redis, "PTTL", key)
    assert isinstance(pttl, int)
    assert pttl > 4000


def test_renew_extends_to_a_full_ttl(redis: tuple[str, int], key: str) -> None:
    holder = lease(redis, key, ttl=5)
    assert holder.acquire()
    raw(redis, "PEXPIRE", key, 300)  # as if most of the TTL had gone by
    assert holder.renew()
    pttl = raw(redis, "PTTL", key)
    assert isinstance(pttl, int)
    assert pttl > 4000


def test_another_holder_cannot_renew_or_release(redis: tuple[str, int], key: str) -> None:
    owner, other = lease(redis, key), lease(redis, key)
    assert owner.acquire()
    assert not other.acquire()
    assert not other.renew()
    other.release()
    assert raw(redis, "GET", key) == owner.holder.encode()
    assert owner.renew()


def test_release_lets_another_acquire_at_once(redis: tuple[str, int], key: str) -> None:
    owner, other = lease(redis, key, ttl=30), lease(redis, key, ttl=30)
    assert owner.acquire()
    owner.release()
    assert raw(redis, "EXISTS", key) == 0
    assert other.acquire()
    assert not owner.renew()


def test_expiry_lets_another_acquire_after_the_ttl(redis: tuple[str, int], key: str) -> None:
    ttl = 0.6
    owner, other = lease(redis, key, ttl=ttl), lease(redis, key, ttl=ttl)
    assert owner.acquire()
    acquired_at = time.monotonic()
    assert not other.acquire()
    assert wait_until(other.acquire, timeout=ttl + 2)
    waited = time.monotonic() - acquired_at
    assert ttl - 0.1 <= waited <= ttl + 0.5
    assert not owner.renew(), "the old holder's renewal must fail once another holds it"
    assert other.renew()


def test_renew_after_expiry_without_another_holder_is_false(
    redis: tuple[str, int], key: str
) -> None:
    owner = lease(redis, key, ttl=5)
    assert owner.acquire()
    raw(redis, "DEL", key)  # expired
    assert not owner.renew()


def test_partition_makes_renew_raise_within_the_timeout(redis: tuple[str, int], key: str) -> None:
    with TcpProxy(redis) as proxy:
        owner = proxied(proxy, key, timeout=0.5)
        other = lease(redis, key, ttl=5)
        assert owner.acquire()
        assert owner.renew()
        proxy.cut()
        started = time.monotonic()
        with pytest.raises(LeaseUnavailable, match="timed out"):
            owner.renew()
        assert time.monotonic() - started < 0.5 + 0.3
        # A new connection while cut is just as silent: still bounded.
        started = time.monotonic()
        with pytest.raises(LeaseUnavailable):
            owner.renew()
        assert time.monotonic() - started < 0.5 + 0.3
        assert not other.acquire(), "the partitioned leader's lease lives until its TTL"
        proxy.restore()
        assert owner.renew(), "after the partition heals, renewing works again"
        owner.release()
        assert other.acquire()


def test_release_never_raises_and_is_bounded(redis: tuple[str, int], key: str) -> None:
    with TcpProxy(redis) as proxy:
        owner = proxied(proxy, key, timeout=0.4)
        assert owner.acquire()
        proxy.cut()
        started = time.monotonic()
        owner.release()
        owner.close()
        assert time.monotonic() - started < 0.4 + 0.3


def test_reset_connection_is_unavailable_then_reconnects(redis: tuple[str, int], key: str) -> None:
    with TcpProxy(redis) as proxy:
        owner = proxied(proxy, key, timeout=1)
        assert owner.acquire()
        proxy.reset()
        with pytest.raises(LeaseUnavailable):
            owner.renew()
        assert owner.renew()
        assert proxy.accepted == 2


def test_unreachable_is_unavailable_fast() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    holder = opened(f"redis://127.0.0.1:{port}/0")
    with pytest.raises(LeaseUnavailable, match="refused") as caught:
        holder.acquire()
    assert not caught.value.permanent


def test_a_server_that_closes_at_once_is_unavailable() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        conn, _ = server.accept()
        conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    holder = opened(f"redis://127.0.0.1:{port}/0")
    with pytest.raises(LeaseUnavailable, match=r"connection (closed|reset)"):
        holder.acquire()
    thread.join(2)
    server.close()


# -- a Redis of its own, with a password, an ACL user and databases ----------


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[tuple[str, int]]:
    binary = shutil.which("redis-server")
    if binary is None:
        missing("redis-server is not installed")
        raise AssertionError  # pragma: no cover
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path), "--requirepass", "p@ss:w/rd"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert wait_until(lambda: _answers(port), timeout=10), "redis-server did not start"
        with RedisConnection("127.0.0.1", port, timeout=2) as conn:
            conn.command("AUTH", "p@ss:w/rd")
            conn.command("ACL", "SETUSER", "lease", "on", ">s3cr%t", "~*", "+@all")
        yield "127.0.0.1", port
    finally:
        process.terminate()
        process.wait(10)


def _answers(port: int) -> bool:
    try:
        with RedisConnection("127.0.0.1", port, timeout=0.5) as conn:
            conn.command("PING")
    except OSError:
        return False
    except Exception:
        return True  # NOAUTH: up
    return True


def _get(address: tuple[str, int], db: int, key: str) -> object:
    with RedisConnection(*address, timeout=2) as conn:
        conn.command("AUTH", "p@ss:w/rd")
        conn.command("SELECT", db)
        return conn.command("GET", key)


def test_password_and_database_from_the_url(private_redis: tuple[str, int]) -> None:
    host, port = private_redis
    url = f"redis://:p%40ss%3Aw%2Frd@{host}:{port}/3"
    holder = opened(url)
    assert holder.acquire()
    assert _get(private_redis, 3, "k") == b"me"
    assert _get(private_redis, 0, "k") is None


def test_acl_user_from_the_url(private_redis: tuple[str, int]) -> None:
    host, port = private_redis
    holder = opened(f"redis://lease:s3cr%25t@{host}:{port}/2")
    assert holder.acquire()
    assert _get(private_redis, 2, "k") == b"me"


def test_wrong_password_is_permanent_and_redacted(private_redis: tuple[str, int]) -> None:
    host, port = private_redis
    holder = opened(f"redis://lease:hunter22@{host}:{port}/0")
    with pytest.raises(LeaseUnavailable) as caught:
        holder.acquire()
    assert caught.value.permanent
    assert "hunter22" not in str(caught.value)
    assert "WRONGPASS" in str(caught.value)


def test_no_password_is_permanent(private_redis: tuple[str, int]) -> None:
    host, port = private_redis
    holder = opened(f"redis://{host}:{port}/0")
    with pytest.raises(LeaseUnavailable, match="NOAUTH") as caught:
        holder.acquire()
    assert caught.value.permanent


# -- validation (no I/O) -------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("amqp://u:secretpw@h/", r"cannot hold the leader lease \(amqp\)"),
        ("nats://secretpw@h", r"cannot hold the leader lease \(nats\)"),
        ("mysql://u:secretpw@h/db", r"cannot hold the leader lease \(mysql\)"),
    ],
)
def test_other_stores_are_config_errors_without_the_password(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        open_lease(dep(url), "k", 5, holder="h", timeout=1)
    assert "secretpw" not in str(caught.value)
    assert str(caught.value).startswith("ENTRYPOINT_LEASE_URL: ")


@pytest.mark.parametrize(
    ("key", "ttl", "timeout", "message"),
    [("", 5, 1, "KEY is empty"), ("k", 0, 1, "TTL must be above 0"), ("k", 5, 0, "timeout")],
)
def test_bad_values_are_config_errors(key: str, ttl: float, timeout: float, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        open_lease(dep("redis://h/0"), key, ttl, holder="h", timeout=timeout)


def _listener() -> socket.socket:
    server = socket.create_server(("127.0.0.1", 0), backlog=8)
    server.setblocking(False)  # noqa: FBT003 - socket's own API
    return server


def _accepted(server: socket.socket) -> int:
    """How many connections reached `server` (the kernel completes them without accept)."""
    count = 0
    while True:
        try:
            conn, _ = server.accept()
        except BlockingIOError:
            return count
        conn.close()
        count += 1


def test_open_does_no_io() -> None:
    with _listener() as server:
        port = server.getsockname()[1]
        made = open_lease(dep(f"redis://127.0.0.1:{port}/0"), "k", 5, holder="h", timeout=0.3)
        OPENED.append(made)  # type: ignore[arg-type]
        assert _accepted(server) == 0
        # Control: the first call does connect, and the count sees it.
        with pytest.raises(LeaseUnavailable, match="timed out"):
            made.acquire()
        assert wait_until(lambda: _accepted(server) == 1, timeout=2)


def test_a_password_with_a_question_mark_never_shows() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    holder = opened(f"redis://:Zx9?Secret@127.0.0.1:{port}")
    with pytest.raises(LeaseUnavailable, match="refused") as caught:
        holder.acquire()
    assert "Zx9" not in str(caught.value)
    assert "Secret" not in str(caught.value)
    assert f"redis://:***@127.0.0.1:{port}" in str(caught.value)
    assert holder.where == f"redis://:***@127.0.0.1:{port}"


@pytest.mark.parametrize(("scheme", "first_byte"), [("rediss", 0x16), ("redis", ord("*"))])
def test_rediss_speaks_tls_and_redis_does_not(scheme: str, first_byte: int) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    received: list[bytes] = []

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.settimeout(2)
            received.append(conn.recv(1))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    holder = opened(f"{scheme}://127.0.0.1:{port}/0")
    with pytest.raises(LeaseUnavailable):
        holder.acquire()
    thread.join(2)
    server.close()
    # 0x16: a TLS handshake record (the ClientHello); '*': a RESP command.
    assert received == [bytes([first_byte])]


def test_default_holder_is_unique_and_names_the_process() -> None:
    first, second = default_holder(), default_holder()
    assert first != second
    host, pid, token = first.split(":")
    assert host == socket.gethostname()
    assert pid.isdigit()
    assert len(token) == 8


def test_a_database_out_of_range_is_permanent(redis: tuple[str, int]) -> None:
    holder = opened(f"redis://{redis[0]}:{redis[1]}/9999")
    with pytest.raises(LeaseUnavailable, match="out of range") as caught:
        holder.acquire()
    assert caught.value.permanent
