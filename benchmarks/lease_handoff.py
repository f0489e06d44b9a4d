"""Figures of the fencing token, the frozen-leader guard and the store handoff.

    python benchmarks/lease_handoff.py [--runs N] [--ttl SECONDS]

Against the Redis (6379) and PostgreSQL (5432, db `test`) on loopback, with
real processes (`tests/handoff_store_driver.py`, `tests/fake_replica.py`):

1. token increments over 20 leader changes among 3 holders (releases and expiries);
2. round trips per replica check (`register`) and per `handoff_active`;
3. handoff start -> CMD start, with one replica that stops in 0.1 s;
4. SIGKILL of the handoff -> its lease gone, and -> the replica resumed;
5. a leader frozen past its TTL (SIGSTOP): SIGCONT -> the guard's verdict.

Nothing is asserted; every process started is stopped in a `finally`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from entrypoint.lease import open_handoff_store, open_lease  # noqa: E402
from entrypoint.lease.handoff import ReplicaState  # noqa: E402
from entrypoint.plan.urls import parse_url  # noqa: E402
from tests.helpers import Running, base_env, descendants  # noqa: E402
from tests.test_handoff_store import CMD, DRIVER, REPLICA  # noqa: E402
from tests.test_leasing import _frozen_leader  # noqa: E402

STORES = {
    "redis": "redis://127.0.0.1:6379/0",
    "postgresql": "postgresql://postgres@127.0.0.1:5432/test",
}


def summary(values: list[float], scale: float = 1, unit: str = "s") -> str:
    if not values:
        return "n/a"
    low, mid, high = (v * scale for v in (min(values), statistics.median(values), max(values)))
    return f"min {low:.2f} {unit}, median {mid:.2f} {unit}, max {high:.2f} {unit} (n={len(values)})"


def first_event(process: Running, name: str, timeout: float) -> dict[str, Any]:
    process.wait_stdout(rf'"event": "{name}"', timeout=timeout)
    for line in process.stdout:
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if event.get("event") == name:
                return dict(event)
    raise AssertionError(name)  # pragma: no cover


def token_increments(url: str) -> int:
    key = f"bench:lease:{uuid.uuid4().hex}"
    dep = parse_url(url, "ENTRYPOINT_LEASE_URL")
    holders = [open_lease(dep, key, 5, holder=f"h{i}", timeout=2) for i in range(3)]
    tokens = []
    try:
        for change in range(20):
            leader = holders[change % 3]
            if not leader.acquire() or leader.token is None:
                raise RuntimeError(f"holder {change % 3} could not take a free lease")
            tokens.append(leader.token)
            for other in holders:
                if other is not leader and other.acquire():
                    raise RuntimeError("a second holder took a lease that was held")
            leader.release()
    finally:
        for holder in holders:
            holder.close()
        forget_token(url, key)
    return tokens[-1] - tokens[0]


def forget_token(url: str, key: str) -> None:
    """Remove the counter this run made (its own key only)."""
    if url.startswith("redis"):
        from entrypoint.probes.resp import RedisConnection

        with RedisConnection("127.0.0.1", 6379, timeout=2) as conn:
            conn.command("DEL", f"{key}:token")
        return
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        conn.execute("DELETE FROM entrypoint_lease_tokens WHERE key = %s", (key,))


def round_trips(url: str) -> tuple[int, int]:
    """Requests sent by one register() and one handoff_active() on a warm connection."""
    from entrypoint.lease import postgres, redis

    key = f"bench:handoff:{uuid.uuid4().hex}"
    store = open_handoff_store(parse_url(url, "X"), key, 5, timeout=2)
    store.register("r", 5)  # connects (and creates the tables)
    sent: list[str] = []
    if url.startswith("redis"):
        target: Any = redis.RedisLink
        original = target.call

        def call(self: Any, *args: Any) -> Any:
            sent.append(str(args[0]))
            return original(self, *args)

        replacement: Any = call
        name = "call"
    else:
        target = postgres._Session
        original = target.query

        def query(self: Any, sql: str, *args: Any, **kwargs: Any) -> Any:
            sent.append(sql.split(maxsplit=1)[0])
            return original(self, sql, *args, **kwargs)

        replacement = query
        name = "query"
    setattr(target, name, replacement)
    try:
        store.register("r", 5, state=ReplicaState.RUNNING)
        per_register = len(sent)
        sent.clear()
        store.handoff_active()
        per_check = len(sent)
    finally:
        setattr(target, name, original)
        store.close()
    return per_register, per_check


def handoff_runs(url: str, ttl: float, runs: int) -> tuple[list[float], list[float], list[float]]:
    to_cmd, gone, resumed = [], [], []
    dep = parse_url(url, "X")
    for _ in range(runs):
        key = f"bench:handoff:{uuid.uuid4().hex}"
        watcher = open_handoff_store(dep, key, ttl, timeout=2)
        replica = Running([*REPLICA, url, key, str(ttl), "r1", "0.1"], base_env())
        handoff: Running | None = None
        try:
            first_event(replica, "started", 10)
            while not watcher.replicas():
                time.sleep(0.01)
            started = time.monotonic()
            handoff = Running([*DRIVER, url, key, str(ttl), "--", *CMD], base_env())
            cmd = first_event(handoff, "cmd_started", 30)
            to_cmd.append(cmd["at"] - started)
            command = descendants(handoff.pid)
            killed = time.monotonic()
            os.kill(handoff.pid, signal.SIGKILL)
            for pid in command:
                os.kill(pid, signal.SIGKILL)
            while watcher.handoff_active():
                time.sleep(0.005)
            gone.append(time.monotonic() - killed)
            resumed.append(first_event(replica, "resumed", ttl + 5)["at"] - killed)
        finally:
            if handoff is not None:
                handoff.kill()
            replica.kill()
            watcher.close()
    return to_cmd, gone, resumed


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--ttl", type=float, default=3.0)
    args = parser.parse_args()
    for name, url in STORES.items():
        port = parse_url(url, "X").port
        try:
            socket.create_connection(("127.0.0.1", port or 0), timeout=2).close()
        except OSError:
            print(f"{name}: not reachable on 127.0.0.1:{port}, skipped")
            continue
        print(f"== {name}")
        print(f"1. token increments over 20 leader changes: {token_increments(url)}")
        per_register, per_check = round_trips(url)
        print(f"2. round trips: register {per_register}, handoff_active {per_check}")
        to_cmd, gone, resumed = handoff_runs(url, args.ttl, args.runs)
        print(f"3. handoff start -> CMD start (TTL {args.ttl:g} s): {summary(to_cmd)}")
        print(f"4. SIGKILL -> lease gone: {summary(gone)}")
        print(f"   SIGKILL -> replica resumed: {summary(resumed)}")
    thaw = [_frozen_leader(0.9, frozen_for=1.2)["thaw_to_verdict_s"] for _ in range(args.runs)]
    print(f"5. SIGCONT -> guard verdict (TTL 0.9 s, frozen 1.2 s): {summary(thaw, 1000, 'ms')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
