"""The handoff lease in the store: its API against real Redis and PostgreSQL, and
`run_store_handoff` with real processes (a handoff, fake replicas, a command)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from entrypoint.errors import ConfigError
from entrypoint.lease import LeaseUnavailable, open_handoff_store
from entrypoint.lease.handoff import HandoffStore, HolderInfo, ReplicaState, hold_ms
from entrypoint.plan.urls import Dependency, parse_url
from entrypoint.probes.resp import RedisConnection
from entrypoint.runtime.handoff_store import yield_budget
from tests.helpers import ROOT, Running, base_env, descendants, wait_until
from tests.servers import require_server

if TYPE_CHECKING:
    from collections.abc import Iterator

DRIVER = [sys.executable, str(ROOT / "tests" / "handoff_store_driver.py")]
REPLICA = [sys.executable, str(ROOT / "tests" / "fake_replica.py")]
# The developer's command: says when it started, exits 0 on TERM, or after argv[1] s with argv[2].
CMD_CODE = """
import json, signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print(json.dumps({"event": "cmd_started", "at": time.monotonic()}), flush=True)
if len(sys.argv) > 1:
    time.sleep(float(sys.argv[1]))
    sys.exit(int(sys.argv[2]))
while True:
    signal.pause()
"""
CMD = [sys.executable, "-c", CMD_CODE]
INFO = HolderInfo(host="laptop-7", pid=4242, since="2026-12-01T10:31:05+01:00")


@dataclass
class Store:
    backend: str
    url: str
    key: str
    opened: list[HandoffStore] = field(default_factory=list)

    @property
    def dep(self) -> Dependency:
        return parse_url(self.url, "ENTRYPOINT_LEASE_URL")

    def open(self, ttl: float = 5, timeout: float = 2) -> HandoffStore:
        made = open_handoff_store(self.dep, self.key, ttl, timeout=timeout)
        self.opened.append(made)
        return made

    def handoff(self, ttl: float, *command: str, wait: bool = False) -> Running:
        options = ["--wait"] if wait else []
        argv = [*DRIVER, self.url, self.key, str(ttl), *options, "--", *command]
        return Running(argv, base_env())

    def replica(self, ttl: float, name: str, stop: float, *, never: bool = False) -> Running:
        argv = [*REPLICA, self.url, self.key, str(ttl), name, str(stop)]
        return Running([*argv, *(["--never-yield"] if never else [])], base_env())


@pytest.fixture(
    params=[
        pytest.param("redis", marks=pytest.mark.server("redis")),
        pytest.param("postgresql", marks=pytest.mark.server("postgresql")),
    ]
)
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    backend: str = request.param
    host, port = require_server(backend)
    key = f"test:handoff:{uuid.uuid4().hex}"
    if backend == "redis":
        url = f"redis://{host}:{port}/0"
    else:
        url = f"postgresql://postgres@{host}:{port}/test"
    made = Store(backend, url, key)
    yield made
    for opened in made.opened:
        opened.close()
    _forget(made)


def _forget(store: Store) -> None:
    """Remove this test's key from the store (only its own rows and keys)."""
    if store.backend == "redis":
        host, port = require_server("redis")
        with RedisConnection(host, port, timeout=2) as conn:
            conn.command("DEL", store.key, f"{store.key}:replicas")
        return
    import psycopg

    with psycopg.connect(store.url, autocommit=True, connect_timeout=5) as conn:
        for table in ("entrypoint_handoff", "entrypoint_handoff_replicas"):
            with contextlib.suppress(psycopg.errors.UndefinedTable):
                conn.execute(f"DELETE FROM {table} WHERE key = %s", (store.key,))  # noqa: S608


def events(process: Running, name: str) -> list[dict[str, Any]]:
    """JSON lines with `event` == name on the process's stdout."""
    found = []
    for line in list(process.stdout):
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if isinstance(event, dict) and event.get("event") == name:
                found.append(event)
    return found


def wait_for(process: Running, name: str, timeout: float = 10) -> dict[str, Any]:
    process.wait_stdout(rf'"event": "{name}"', timeout=timeout)
    return events(process, name)[0]


# -- the API ----------------------------------------------------------------------


def test_hold_holder_renew_release(store: Store) -> None:
    mine, theirs = store.open(), store.open()
    assert not theirs.handoff_active()
    assert theirs.holder() is None
    assert mine.hold(INFO)
    assert mine.hold(INFO), "holding again while ours is true"
    other = HolderInfo(host="laptop-9", pid=9, since="2026-12-01T11:00:00+01:00")
    assert not theirs.hold(other)
    assert theirs.holder() == INFO
    assert theirs.handoff_active()
    assert not theirs.renew(), "never held"
    theirs.release()
    assert theirs.handoff_active(), "another's release changes nothing"
    assert mine.renew()
    mine.release()
    assert not theirs.handoff_active()
    assert theirs.holder() is None
    assert theirs.hold(other)
    assert not mine.renew()


def test_an_unrenewed_handoff_lease_expires_within_half_the_ttl(store: Store) -> None:
    ttl = 0.9
    mine, theirs = store.open(ttl), store.open(ttl)
    assert mine.hold(INFO)
    held_at = time.monotonic()
    assert theirs.handoff_active()
    assert wait_until(lambda: not theirs.handoff_active(), timeout=3)
    gone_after = time.monotonic() - held_at
    assert hold_ms(ttl) / 1000 - 0.1 <= gone_after <= hold_ms(ttl) / 1000 + 0.2, gone_after
    assert not mine.renew()
    assert theirs.hold(INFO)


def test_registrations_states_and_what_they_saw(store: Store) -> None:
    replica, handoff = store.open(), store.open()
    assert replica.register("r1", 5, stop_timeout=7) is False
    assert replica.register("r2", 5) is False
    listed = {r.replica_id: r for r in handoff.replicas()}
    assert sorted(listed) == ["r1", "r2"]
    assert listed["r1"].state is ReplicaState.RUNNING
    assert listed["r1"].stop_timeout == 7
    assert listed["r2"].stop_timeout == 0
    assert 4 < listed["r1"].expires_in <= 5
    assert not listed["r1"].saw_handoff
    assert handoff.hold(INFO)
    assert replica.register("r1", 5) is True
    assert replica.report("r1", ReplicaState.YIELDED) is True
    listed = {r.replica_id: r for r in handoff.replicas()}
    assert listed["r1"].state is ReplicaState.YIELDED
    assert listed["r1"].yielded
    assert listed["r1"].stop_timeout == 7, "a report keeps what the registration said"
    assert not listed["r2"].yielded
    assert replica.register("r1", 5) is True
    assert handoff.replicas()[0].state is ReplicaState.YIELDED, "no state given: kept"
    handoff.release()
    assert replica.report("r1", ReplicaState.RUNNING) is False


def test_a_yielded_state_written_before_the_handoff_does_not_count(store: Store) -> None:
    replica, handoff = store.open(), store.open()
    replica.register("r1", 5, state=ReplicaState.YIELDED)  # left over from an earlier handoff
    assert handoff.hold(INFO)
    (info,) = handoff.replicas()
    assert info.state is ReplicaState.YIELDED
    assert not info.yielded, "it may be resuming: it saw no handoff"
    replica.register("r1", 5)
    (info,) = handoff.replicas()
    assert info.yielded


def test_a_registration_lapses_by_itself(store: Store) -> None:
    replica, handoff = store.open(), store.open()
    replica.register("gone", 0.5)
    replica.register("stays", 30)
    assert wait_until(lambda: [r.replica_id for r in handoff.replicas()] == ["stays"], 3)


def test_values_from_the_store_are_shown_on_one_line(store: Store) -> None:
    mine, theirs = store.open(), store.open()
    assert mine.hold(HolderInfo(host="evil\nhost\x1b[31m", pid=1, since="now\r\nx"))
    holder = theirs.holder()
    assert holder is not None
    shown = holder.describe()
    assert "\n" not in shown
    assert "\r" not in shown
    assert "\x1b" not in shown
    assert "evil\\nhost" in shown


def _count_round_trips(handoff: HandoffStore, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every request the store sends from now on, one entry per round trip."""
    sent: list[str] = []
    if hasattr(handoff, "_link"):
        link = handoff._link
        original = link.call

        def call(*args: str | int) -> Any:
            sent.append(str(args[0]))
            return original(*args)

        monkeypatch.setattr(link, "_connection", _counting(link._connection, sent))
        monkeypatch.setattr(link, "call", call)
    else:
        from entrypoint.lease import postgres

        original_query = postgres._Session.query

        def query(self: Any, sql: str, *args: Any, **kwargs: Any) -> Any:
            sent.append(sql.split(maxsplit=1)[0])
            return original_query(self, sql, *args, **kwargs)

        monkeypatch.setattr(postgres._Session, "query", query)
    return sent


def _counting(connection: Any, sent: list[str]) -> Any:
    def connect(deadline: float) -> Any:
        conn = connection(deadline)
        original = conn.command

        def command(*args: Any) -> Any:
            if args[0] in ("AUTH", "SELECT"):
                sent.append(str(args[0]))
            return original(*args)

        conn.command = command
        return conn

    return connect


def test_one_round_trip_per_replica_check(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    replica = store.open()
    replica.register("r1", 5)  # the connection is made (and tables created) here
    sent = _count_round_trips(replica, monkeypatch)
    for _ in range(10):
        replica.register("r1", 5, state=ReplicaState.RUNNING)
    assert len(sent) == 10, sent
    sent.clear()
    assert not replica.handoff_active()
    assert len(sent) == 1, sent


def test_an_unreachable_store_is_unavailable_and_masked() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for url in (
        f"redis://:Zx9?Secret@127.0.0.1:{port}",
        f"postgresql://u:Zx9?S@127.0.0.1:{port}/d",
    ):
        handoff = open_handoff_store(parse_url(url, "X"), "k", 5, timeout=1)
        try:
            with pytest.raises(LeaseUnavailable, match="refused") as caught:
                handoff.handoff_active()
            assert "Zx9" not in str(caught.value)
            assert ":***@127.0.0.1" in str(caught.value)
        finally:
            handoff.close()


def test_a_store_that_cannot_hold_it_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"cannot hold the handoff lease \(amqp\)") as caught:
        open_handoff_store(parse_url("amqp://u:Zx9Secret@h/", "QUEUE_URL"), "k", 5, timeout=1)
    assert "Zx9Secret" not in str(caught.value)
    with pytest.raises(ConfigError, match="HANDOFF_KEY is empty"):
        open_handoff_store(parse_url("redis://h", "QUEUE_URL"), "", 5, timeout=1)


def test_yield_budget() -> None:
    assert yield_budget(3) == 6
    assert yield_budget(3, [25, 10, 0]) == 31
    assert yield_budget(15, [-1]) == 30


# -- run_store_handoff with real processes -----------------------------------------


def test_a_second_handoff_exits_75_naming_the_holder(store: Store) -> None:
    with store.handoff(3, *CMD) as first:
        wait_for(first, "cmd_started")
        with store.handoff(3, *CMD) as second:
            assert second.wait(10) == 75
            lines = [line for line in second.stderr if not line.startswith("{")]
            assert len(lines) == 1, second.stderr
            assert f"host {socket.gethostname()}, pid {first.pid}, since 20" in lines[0]
            assert "--wait" in lines[0]
            assert not events(second, "cmd_started")
        first.signal(signal.SIGTERM)
        assert first.wait(10) == 0
    assert not store.open().handoff_active(), "released when the command ended"


def test_wait_waits_for_the_holder_then_runs(store: Store) -> None:
    with store.handoff(3, *CMD) as first:
        wait_for(first, "cmd_started")
        with store.handoff(3, *CMD, wait=True) as second:
            second.wait_event("handoff_waiting")
            assert not events(second, "cmd_started")
            first.signal(signal.SIGTERM)
            assert first.wait(10) == 0
            ended = time.monotonic()
            started = wait_for(second, "cmd_started", timeout=5)
            assert started["at"] - ended < 2
            second.signal(signal.SIGTERM)
            assert second.wait(10) == 0


def test_wait_is_interrupted_by_term(store: Store) -> None:
    with store.handoff(3, *CMD) as first:
        wait_for(first, "cmd_started")
        with store.handoff(3, *CMD, wait=True) as second:
            second.wait_event("handoff_waiting")
            sent = time.monotonic()
            second.signal(signal.SIGTERM)
            assert second.wait(5) == 128 + signal.SIGTERM
            assert time.monotonic() - sent < 1
            assert not events(second, "cmd_started")
        assert store.open().holder() is not None, "the first still holds it"


def test_cmd_starts_only_once_every_replica_yielded(store: Store) -> None:
    ttl = 1.5
    with store.replica(ttl, "fast", 0.1) as fast, store.replica(ttl, "slow", 0.8) as slow:
        wait_for(fast, "started")
        wait_for(slow, "started")
        assert wait_until(lambda: len(store.open().replicas()) == 2, timeout=5)
        with store.handoff(ttl, *CMD) as handoff:
            started = wait_for(handoff, "cmd_started", timeout=10)
            yielded = [wait_for(fast, "yielded"), wait_for(slow, "yielded")]
            assert all(y["at"] < started["at"] for y in yielded), (yielded, started)
            handoff.signal(signal.SIGTERM)
            assert handoff.wait(10) == 0
            released = time.monotonic()
        for replica in (fast, slow):
            resumed = wait_for(replica, "resumed", timeout=ttl + 2)
            assert resumed["at"] - released < ttl


def test_a_replica_that_never_yields_ends_the_wait_with_one_line(store: Store) -> None:
    ttl = 1.0
    with store.replica(ttl, "stuck", 0.5, never=True) as stuck:
        wait_for(stuck, "started")
        assert wait_until(lambda: len(store.open().replicas()) == 1, timeout=5)
        with store.handoff(ttl, *CMD) as handoff:
            assert handoff.wait(10) == 69
            lines = [line for line in handoff.stderr if not line.startswith("{")]
            assert lines == [
                (
                    "entrypoint: error: handoff: 1 replica did not yield: stuck (running), "
                    f"within {yield_budget(ttl, [0.5]):g} s; {sys.executable} was not started"
                )
            ]
            assert not events(handoff, "cmd_started")
        assert not store.open().handoff_active(), "released"


def test_term_while_waiting_for_the_replicas_starts_nothing(store: Store) -> None:
    with store.replica(3, "stuck", 0.5, never=True) as stuck:
        wait_for(stuck, "started")
        assert wait_until(lambda: len(store.open().replicas()) == 1, timeout=5)
        with store.handoff(3, *CMD) as handoff:
            handoff.wait_event("handoff_waiting_for_replicas")
            handoff.signal(signal.SIGTERM)
            assert handoff.wait(5) == 128 + signal.SIGTERM
            assert not events(handoff, "cmd_started")
        assert not store.open().handoff_active()


def test_sigkill_of_the_handoff_the_replicas_resume_within_the_ttl(store: Store) -> None:
    ttl = 3.0
    with store.replica(ttl, "r1", 0.1) as replica:
        wait_for(replica, "started")
        assert wait_until(lambda: len(store.open().replicas()) == 1, timeout=5)
        watcher = store.open(ttl)
        with store.handoff(ttl, *CMD) as handoff:
            wait_for(handoff, "cmd_started", timeout=10)
            command = descendants(handoff.pid)
            killed = time.monotonic()
            # The handoff first: a command killed first would let it release the lease.
            os.kill(handoff.pid, signal.SIGKILL)
            for pid in command:  # orphaned now: Running.kill would no longer find it
                os.kill(pid, signal.SIGKILL)
            handoff.kill()
            assert not handoff.events("handoff_released"), "nothing released it"
        assert wait_until(lambda: not watcher.handoff_active(), timeout=ttl)
        expired = time.monotonic() - killed
        resumed = wait_for(replica, "resumed", timeout=ttl + 2)
        resume_s = resumed["at"] - killed
        print(f"\n{store.backend}: lease gone {expired:.2f} s, replica resumed {resume_s:.2f} s")
        assert resume_s < ttl


def test_the_lease_is_kept_while_a_long_command_runs(store: Store) -> None:
    ttl = 0.9  # each renewal, every 0.15 s, sets the expiry 0.45 s ahead
    watcher = store.open(ttl)
    with store.handoff(ttl, *CMD, "2.5", "3") as handoff:
        wait_for(handoff, "cmd_started")
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            assert watcher.handoff_active()
            assert not wait_until(lambda: False, timeout=0.1)
        assert handoff.wait(10) == 3
    assert not watcher.handoff_active()


def test_a_command_that_cannot_start_still_releases(store: Store) -> None:
    with store.handoff(3, "no-such-command-here") as handoff:
        assert handoff.wait(10) == 127
        assert any("command not found: no-such-command-here" in line for line in handoff.stderr)
    assert not store.open().handoff_active()


def test_sigint_to_the_handoff_alone_reaches_the_command_once(store: Store) -> None:
    code = (
        "import json, signal, sys, time\n"
        "got = []\n"
        "def on_int(*_):\n"
        "    got.append(1); print(json.dumps({'event': 'int', 'n': len(got)}), flush=True)\n"
        "signal.signal(signal.SIGINT, on_int)\n"
        "signal.signal(signal.SIGTERM, lambda *_: sys.exit(len(got)))\n"
        "print(json.dumps({'event': 'cmd_started', 'at': time.monotonic()}), flush=True)\n"
        "while True: signal.pause()\n"
    )
    with store.handoff(3, sys.executable, "-c", code) as handoff:
        wait_for(handoff, "cmd_started")
        handoff.signal(signal.SIGINT)
        wait_for(handoff, "int")
        handoff.signal(signal.SIGTERM)
        assert handoff.wait(10) == 1, "one SIGINT, forwarded once"
    assert not store.open().handoff_active()
