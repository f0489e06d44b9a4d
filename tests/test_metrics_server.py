"""The /metrics endpoint on a real Loop (in a thread), scraped over real sockets.

The exposition is parsed with prometheus_client's own text parser. Hostile
scrapers (silent, endless head, a flood, one that never reads) must leave the
loop serving its timers and other fds, end by their deadline, and leak no fd.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from entrypoint.runtime.depth import QueueDepth
from entrypoint.runtime.metrics import (
    EXIT_REASONS,
    MetricsServer,
    MetricsUnavailable,
    Snapshot,
    render,
)
from tests.helpers import wait_until
from tests.loop_thread import LoopThread, fds_left, open_fds

DEADLINE = 1.0

FULL = Snapshot(
    child_up=True,
    starts=4,
    exits={"exit": 1, "signal": 2},
    restart_backoff_seconds=2.5,
    child_uptime_seconds=12.25,
    leader=True,
    dependencies=(
        ("redis://:***@redis:6379/0", True),
        ("postgresql://app:hunter22@db:5432/app", False),
    ),
    heartbeat_age_seconds=3.0,
    child_rss_bytes=123456789,
    queues=(
        QueueDepth("rq:default", up=True, ready=5, delayed=2, reserved=1),
        QueueDepth("celery:celery", up=True, ready=7),
        QueueDepth("sidekiq:default", up=False, error="timed out after 2 s"),
    ),
)


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    running = LoopThread()
    yield running
    running.stop()


def start_server(
    loop_thread: LoopThread,
    snapshot: Snapshot = FULL,
    host: str = "127.0.0.1",
    **options: object,
) -> MetricsServer:
    options.setdefault("deadline", DEADLINE)
    return loop_thread.call(
        lambda: MetricsServer(loop_thread.loop, host, 0, lambda: snapshot, **options)  # type: ignore[arg-type]
    )


def exchange(port: int, request: bytes, host: str = "127.0.0.1", timeout: float = 5) -> bytes:
    """Send `request`, read until the server closes."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect((host, port))
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def parse_response(data: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def scrape(port: int, host: str = "127.0.0.1") -> tuple[int, dict[str, str], bytes]:
    return parse_response(exchange(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", host))


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


# --- the exposition -------------------------------------------------------------

FAMILIES = {
    "entrypoint_child_up": "gauge",
    "entrypoint_child_starts": "counter",
    "entrypoint_child_exits": "counter",
    "entrypoint_restart_backoff_seconds": "gauge",
    "entrypoint_child_uptime_seconds": "gauge",
    "entrypoint_leader": "gauge",
    "entrypoint_dependency_up": "gauge",
    "entrypoint_heartbeat_age_seconds": "gauge",
    "entrypoint_child_rss_bytes": "gauge",
    "entrypoint_queue_depth": "gauge",
    "entrypoint_queue_delayed": "gauge",
    "entrypoint_queue_reserved": "gauge",
    "entrypoint_queue_depth_up": "gauge",
}


def test_every_family_has_help_type_and_the_snapshot_values() -> None:
    text = render(FULL).decode()
    parsed = {family.name: family for family in text_string_to_metric_families(text)}
    assert {name: parsed[name].type for name in FAMILIES} == FAMILIES
    assert all(parsed[name].documentation for name in FAMILIES)
    for name in FAMILIES:
        assert f"# HELP {name}" in text
    values = samples(text)
    assert values[("entrypoint_child_up", ())] == 1
    assert values[("entrypoint_child_starts_total", ())] == 4
    for reason in EXIT_REASONS:
        expected = {"exit": 1, "signal": 2}.get(reason, 0)
        assert values[("entrypoint_child_exits_total", (("reason", reason),))] == expected
    assert values[("entrypoint_restart_backoff_seconds", ())] == 2.5
    assert values[("entrypoint_child_uptime_seconds", ())] == 12.25
    assert values[("entrypoint_leader", ())] == 1
    assert values[("entrypoint_heartbeat_age_seconds", ())] == 3.0
    assert values[("entrypoint_child_rss_bytes", ())] == 123456789
    assert values[("entrypoint_queue_depth", (("queue", "rq:default"),))] == 5
    assert values[("entrypoint_queue_delayed", (("queue", "rq:default"),))] == 2
    assert values[("entrypoint_queue_reserved", (("queue", "rq:default"),))] == 1
    assert values[("entrypoint_queue_depth", (("queue", "celery:celery"),))] == 7
    assert ("entrypoint_queue_delayed", (("queue", "celery:celery"),)) not in values
    # A store that did not answer: no depth sample, and depth_up 0.
    assert ("entrypoint_queue_depth", (("queue", "sidekiq:default"),)) not in values
    assert values[("entrypoint_queue_depth_up", (("queue", "sidekiq:default"),))] == 0
    assert values[("entrypoint_queue_depth_up", (("queue", "rq:default"),))] == 1


def test_no_secret_in_any_label() -> None:
    text = render(FULL).decode()
    assert "hunter22" not in text
    values = samples(text)
    deps = {
        dict(labels)["dependency"]: v
        for (name, labels), v in values.items()
        if name == "entrypoint_dependency_up"
    }
    assert deps == {"redis://:***@redis:6379/0": 1, "postgresql://app:***@db:5432/app": 0}


def test_optional_values_have_no_sample() -> None:
    values = samples(render(Snapshot()).decode())
    for name in (
        "entrypoint_leader",
        "entrypoint_heartbeat_age_seconds",
        "entrypoint_child_rss_bytes",
    ):
        assert (name, ()) not in values
    assert values[("entrypoint_child_up", ())] == 0
    assert not any(name.startswith("entrypoint_queue") for name, _ in values)


# --- HTTP -------------------------------------------------------------------------


def test_a_scrape_is_parsed_by_prometheus_client(loop_thread: LoopThread) -> None:
    server = start_server(loop_thread)
    status, headers, body = scrape(server.address[1])
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    assert headers["connection"] == "close"
    assert int(headers["content-length"]) == len(body)
    values = samples(body.decode())
    assert values[("entrypoint_child_starts_total", ())] == 4
    # The supervisor's own process metrics come along.
    assert values[("process_open_fds", ())] > 0
    loop_thread.call(server.close)


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /metrics HTTP/1.0\r\n\r\n", 200),
        (b"GET /metrics?name[]=x HTTP/1.1\r\nHost: a\r\n\r\n", 200),
        (b"GET /metrics HTTP/1.1\n\n", 200),
        (b"GET / HTTP/1.1\r\n\r\n", 200),
        (b"GET /other HTTP/1.1\r\n\r\n", 404),
        (b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 405),
        (b"DELETE / HTTP/1.0\r\n\r\n", 405),
        (b"GET /metrics HTTP/2.0\r\n\r\n", 505),
        (b"hello\r\n\r\n", 400),
        (b"GET  /metrics HTTP/1.1\r\n\r\n", 400),
    ],
)
def test_requests_and_their_status(
    loop_thread: LoopThread, request_bytes: bytes, status: int
) -> None:
    server = start_server(loop_thread)
    got, headers, _body = parse_response(exchange(server.address[1], request_bytes))
    assert got == status
    assert headers["connection"] == "close"
    if status == 405:
        assert headers["allow"] == "GET, HEAD"
    loop_thread.call(server.close)


def test_head_has_no_body(loop_thread: LoopThread) -> None:
    server = start_server(loop_thread)
    status, headers, body = parse_response(
        exchange(server.address[1], b"HEAD /metrics HTTP/1.1\r\n\r\n")
    )
    assert (status, body) == (200, b"")
    assert int(headers["content-length"]) > 100
    loop_thread.call(server.close)


def test_port_in_use_is_one_clear_error(loop_thread: LoopThread) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(MetricsUnavailable, match=rf"^cannot listen on 127\.0\.0\.1:{port}: "):
            loop_thread.call(
                lambda: MetricsServer(loop_thread.loop, "127.0.0.1", port, lambda: FULL)
            )


def test_every_interface_answers_on_ipv4_and_ipv6(loop_thread: LoopThread) -> None:
    server = start_server(loop_thread, host="")
    port = server.address[1]
    assert scrape(port, "127.0.0.1")[0] == 200
    if socket.has_dualstack_ipv6():
        with contextlib.suppress(OSError):  # a kernel without IPv6 on loopback
            assert scrape(port, "::1")[0] == 200
    loop_thread.call(server.close)


def test_no_wakeup_while_idle(loop_thread: LoopThread) -> None:
    server = start_server(loop_thread)
    assert scrape(server.address[1])[0] == 200
    assert wait_until(lambda: loop_thread.call(lambda: server.connections) == 0, 5)
    # Read on the loop's thread: the wakeup that runs this call is counted once
    # it returns, so the second read is one more when nothing else woke it.
    before = loop_thread.call(lambda: loop_thread.wakeups)
    time.sleep(1.0)  # measuring idleness: nothing may happen during this second
    assert loop_thread.call(lambda: loop_thread.wakeups) == before + 1
    loop_thread.call(server.close)


def test_a_failing_snapshot_answers_500_and_serving_goes_on(loop_thread: LoopThread) -> None:
    calls = []

    def snapshot() -> Snapshot:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return FULL

    server = loop_thread.call(
        lambda: MetricsServer(loop_thread.loop, "127.0.0.1", 0, snapshot, deadline=DEADLINE)
    )
    assert scrape(server.address[1])[0] == 500
    assert scrape(server.address[1])[0] == 200
    loop_thread.call(server.close)


# --- hostile scrapers -------------------------------------------------------------


def ended_within(sock: socket.socket, timeout: float) -> float:
    """Seconds until the server closed `sock` (reading and dropping what it sends)."""
    started = time.monotonic()
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return time.monotonic() - started


def test_a_scraper_that_sends_nothing_is_closed_at_the_deadline(
    loop_thread: LoopThread,
) -> None:
    server = start_server(loop_thread)
    loop_thread.start_ticker(0.02)
    fds = open_fds()
    started = time.monotonic()
    with socket.create_connection(server.address, timeout=5) as silent:
        # Meanwhile a real scrape is served and the loop's other fds answer.
        assert scrape(server.address[1])[0] == 200
        assert loop_thread.echo_latency() < 0.5
        elapsed = ended_within(silent, DEADLINE + 3)
    assert DEADLINE * 0.8 <= time.monotonic() - started <= DEADLINE + 1.0, elapsed
    assert loop_thread.max_tick_gap(started) < 0.5
    assert wait_until(lambda: not fds_left(fds), 5), fds_left(fds)
    loop_thread.call(server.close)


def test_a_megabyte_of_headers_is_cut(loop_thread: LoopThread) -> None:
    server = start_server(loop_thread)
    fds = open_fds()
    started = time.monotonic()
    sent = 0
    received = b""
    with socket.create_connection(server.address, timeout=5) as sock:
        try:
            sock.sendall(b"GET /metrics HTTP/1.1\r\n")
            header = b"X-Filler: " + b"a" * 1000 + b"\r\n"
            while sent < 1 << 20:
                sock.sendall(header)
                sent += len(header)
        except (ConnectionResetError, BrokenPipeError):
            pass
        with contextlib.suppress(OSError):
            received = sock.recv(65536)
    # Cut well before a megabyte went through, and long before the deadline.
    assert sent < 1 << 20 or received.startswith(b"HTTP/1.1 431")
    assert time.monotonic() - started < DEADLINE
    assert wait_until(lambda: loop_thread.call(lambda: server.connections) == 0, 5)
    assert wait_until(lambda: not fds_left(fds), 5), fds_left(fds)
    loop_thread.call(server.close)


# The flood comes from another process, as it would: a thread of this one
# would compete with the loop for the GIL and overflow the backlog itself.
FLOOD = """
import json, selectors, socket, sys, time
port, count, timeout = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
socks, connected, ends = [], [], {}
for _ in range(count):
    sock = socket.socket()
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    connected.append(time.monotonic())
    socks.append(sock)
print("connected", flush=True)
with selectors.DefaultSelector() as selector:
    for sock in socks:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while len(ends) < count and time.monotonic() < deadline:
        for key, _ in selector.select(deadline - time.monotonic()):
            try:
                data = key.fileobj.recv(65536)
            except BlockingIOError:
                continue
            except ConnectionResetError:
                data = b""
            if not data:
                ends[key.fileobj] = time.monotonic()
                selector.unregister(key.fileobj)
lifetimes = [ends.get(s, float("inf")) - c for s, c in zip(socks, connected)]
print(json.dumps({"lifetimes": lifetimes, "connecting": connected[-1] - connected[0]}))
"""


def test_a_flood_of_500_connections(loop_thread: LoopThread) -> None:
    # Longer than the kernel's first SYN-ACK retry (1 s), which a burst may meet.
    deadline = 2.0
    server = start_server(loop_thread, max_connections=16, deadline=deadline)
    loop_thread.start_ticker(0.02)
    fds = open_fds()
    started = time.monotonic()
    with subprocess.Popen(
        [sys.executable, "-c", FLOOD, str(server.address[1]), "500", str(deadline + 5)],
        stdout=subprocess.PIPE,
        text=True,
    ) as flood:
        assert flood.stdout is not None
        assert flood.stdout.readline() == "connected\n"
        # Meanwhile the loop answers its other fds.
        assert loop_thread.echo_latency() < 0.5
        report = json.loads(flood.stdout.readline())
        assert flood.wait(10) == 0
    # Every connection ended by its deadline: 16 held to it, the rest turned away at once.
    lifetimes = report["lifetimes"]
    assert max(lifetimes) <= deadline + 1.0, report["connecting"]
    assert sum(1 for life in lifetimes if life > deadline * 0.9) <= 16
    assert loop_thread.call(lambda: server.rejected) >= 500 - 16
    assert loop_thread.max_tick_gap(started) < 0.5
    assert scrape(server.address[1])[0] == 200
    assert wait_until(lambda: not fds_left(fds), 5), fds_left(fds)
    loop_thread.call(server.close)


def test_a_scraper_that_never_reads_cannot_stall_the_loop(loop_thread: LoopThread) -> None:
    # An exposition larger than what loopback buffers hold (about 3 MB: 40000
    # dependencies, rendered in under a second), and a peer with a tiny window.
    big = Snapshot(dependencies=tuple((f"tcp://host-{i}.example:80", True) for i in range(40000)))
    deadline = 4.0
    server = start_server(loop_thread, snapshot=big, deadline=deadline)
    loop_thread.start_ticker(0.02)
    fds = open_fds()
    with socket.socket() as stuck:
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.settimeout(5)
        stuck.connect(server.address)
        accepted = time.monotonic()
        stuck.sendall(b"GET /metrics HTTP/1.1\r\n\r\n")
        loop_thread.echo_latency()  # returns once the render is over and writing has begun
        started = time.monotonic()
        assert loop_thread.call(lambda: (server.served, server.connections)) == (0, 1)
        # The loop goes on: its fds, its timers, and another scraper.
        assert loop_thread.echo_latency() < 0.5
        status, _headers, body = parse_response(
            exchange(server.address[1], b"GET / HTTP/1.0\r\n\r\n")
        )
        assert (status, body) == (200, b"entrypoint: Prometheus metrics at /metrics\n")
        time.sleep(0.5)  # an interval for the ticker to show its regularity in
        assert loop_thread.max_tick_gap(started) < 0.5
        assert loop_thread.call(lambda: (server.served, server.connections)) == (1, 1)
        assert wait_until(lambda: loop_thread.call(lambda: server.connections) == 0, deadline + 2)
        assert time.monotonic() - accepted <= deadline + 2.0  # the render's time, on a busy host
    assert loop_thread.call(lambda: server.served) == 1  # the stuck answer never completed
    assert wait_until(lambda: not fds_left(fds), 5), fds_left(fds)
    loop_thread.call(server.close)


def test_close_releases_every_fd(loop_thread: LoopThread) -> None:
    fds = open_fds()
    server = start_server(loop_thread)
    silent = socket.create_connection(server.address, timeout=5)
    assert wait_until(lambda: loop_thread.call(lambda: server.connections) == 1, 5)
    loop_thread.call(server.close)
    silent.close()
    assert wait_until(lambda: not fds_left(fds), 5), fds_left(fds)
