"""`GET /metrics` from the supervisor's own Loop, in Prometheus' text format.

The supervisor owns the facts; at each scrape a collector reads one frozen
`Snapshot` of them (prometheus_client's custom-collector pattern: state read
at scrape time, no counters updated from every code path) and
`generate_latest` renders it from a private registry.

The server is a few callbacks on the Loop: a non-blocking listening socket,
and per connection a deadline timer, a bounded request head and a
non-blocking write. While nobody scrapes it costs one idle fd and no wakeup.
Hostile peers are bounded: a connection that sends nothing, sends an endless
head, or never reads its answer is closed at its deadline; past
`max_connections` a new connection gets a one-line 503 and is closed at once,
so a flood costs an accept and a close each, and nothing waits.

Importing this module imports prometheus_client (30 to 50 ms and about 8 MiB on top
of the supervisor): import it only when `ENTRYPOINT_METRICS_ADDR` is set.
"""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import CollectorRegistry

from entrypoint.plan.addresses import display_address
from entrypoint.plan.redact import redact_text

if TYPE_CHECKING:
    from entrypoint.runtime.depth import QueueDepth, QueueDepths
    from entrypoint.runtime.loop import Loop, Timer

# The causes `child_exited` logs (the contract's `reason`); each has a sample, 0 until seen.
EXIT_REASONS = ("exit", "signal", "oom_kill", "watchdog", "memory", "stop")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_HEAD = 8192  # bytes of request line and headers; past it the connection is cut
DEADLINE = 5.0  # seconds a connection may live, from accept to the last byte written
MAX_CONNECTIONS = 16
BACKLOG = 1024  # a burst of connections waits in the kernel, not in SYN retries
_ACCEPTS_PER_WAKEUP = 64  # bounded work per callback: a flood cannot starve timers
_RECV_SIZE = 4096
_PAUSE_ON_EMFILE = 0.5  # out of fds: stop accepting for this long rather than spin


class MetricsUnavailable(Exception):
    """The metrics port cannot be served (in use, bad address, no permission).

    One line, for a `metrics_unavailable` warning: the worker runs without metrics.
    """


@dataclass(frozen=True)
class Snapshot:
    """What the supervisor knows at one instant, as the metrics show it.

    `exits`: exits by reason (keys from EXIT_REASONS; others are shown too).
    `dependencies`: (redacted URL, answered at the last probe) pairs.
    `leader`: None when the mode holds no lease. `heartbeat_age_seconds`,
    `child_rss_bytes`: None when not configured or not known.
    `restart_backoff_seconds`: the delay of the restart now pending, 0 when none.
    `queues`: filled in by the server from its `QueueDepths`, if it has one.
    """

    child_up: bool = False
    starts: int = 0
    exits: Mapping[str, int] = field(default_factory=dict)
    restart_backoff_seconds: float = 0.0
    child_uptime_seconds: float = 0.0
    leader: bool | None = None
    dependencies: tuple[tuple[str, bool], ...] = ()
    heartbeat_age_seconds: float | None = None
    child_rss_bytes: int | None = None
    queues: tuple[QueueDepth, ...] = ()


class SnapshotCollector:
    """A prometheus_client collector whose `collect()` reads `source()` at scrape time."""

    def __init__(self, source: Callable[[], Snapshot]) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        return iter(families(self._source()))


def families(snap: Snapshot) -> list[Metric]:
    """The entrypoint_* families of one snapshot, each with HELP and TYPE."""

    def gauge(name: str, doc: str, value: float | None) -> GaugeMetricFamily:
        family = GaugeMetricFamily(name, doc)
        if value is not None:
            family.add_metric([], value)
        return family

    exits = CounterMetricFamily(
        "entrypoint_child_exits",
        "Exits of the child by cause (exit, signal, oom_kill, watchdog, memory, stop).",
        labels=["reason"],
    )
    for reason in (*EXIT_REASONS, *sorted(set(snap.exits) - set(EXIT_REASONS))):
        exits.add_metric([reason], snap.exits.get(reason, 0))
    dependencies = GaugeMetricFamily(
        "entrypoint_dependency_up",
        "1 when the dependency (its URL, secrets masked) answered at the last probe.",
        labels=["dependency"],
    )
    for name, up in snap.dependencies:
        # Masked again here: a label must never carry a secret, whoever built it.
        dependencies.add_metric([redact_text(name)], 1 if up else 0)
    queue_families = [
        GaugeMetricFamily(
            "entrypoint_queue_depth", "Jobs ready to run now, per queue.", labels=["queue"]
        ),
        GaugeMetricFamily(
            "entrypoint_queue_delayed", "Jobs scheduled for later, per queue.", labels=["queue"]
        ),
        GaugeMetricFamily(
            "entrypoint_queue_reserved", "Jobs held by a worker, per queue.", labels=["queue"]
        ),
    ]
    depth_up = GaugeMetricFamily(
        "entrypoint_queue_depth_up",
        "1 when the queue's store answered the last read.",
        labels=["queue"],
    )
    for depth in snap.queues:
        depth_up.add_metric([depth.label], 1 if depth.up else 0)
        if not depth.up:
            continue
        for family, value in zip(
            queue_families, (depth.ready, depth.delayed, depth.reserved), strict=True
        ):
            if value is not None:
                family.add_metric([depth.label], value)
    starts = CounterMetricFamily("entrypoint_child_starts", "Starts of the child.")
    starts.add_metric([], snap.starts)
    return [
        gauge("entrypoint_child_up", "1 while the child runs.", 1 if snap.child_up else 0),
        starts,
        exits,
        gauge(
            "entrypoint_restart_backoff_seconds",
            "Delay of the restart now pending (0 when none is).",
            snap.restart_backoff_seconds,
        ),
        gauge(
            "entrypoint_child_uptime_seconds",
            "Seconds since the running child started (0 when none runs).",
            snap.child_uptime_seconds,
        ),
        gauge(
            "entrypoint_leader",
            "1 while this replica holds the mode's lease (no sample without a lease).",
            None if snap.leader is None else (1 if snap.leader else 0),
        ),
        dependencies,
        gauge(
            "entrypoint_heartbeat_age_seconds",
            "Seconds since the child's last heartbeat (no sample without a heartbeat source).",
            snap.heartbeat_age_seconds,
        ),
        gauge(
            "entrypoint_child_rss_bytes",
            "Resident memory of the child's process group (no sample when not measured).",
            snap.child_rss_bytes,
        ),
        *queue_families,
        depth_up,
    ]


def make_registry(source: Callable[[], Snapshot], *, process: bool = True) -> CollectorRegistry:
    """A private registry: the snapshot's families, plus (when `process`) the supervisor's own
    `process_*` (CPU, RSS, fds, read from /proc at scrape time) and `python_info`."""
    registry = CollectorRegistry()
    registry.register(SnapshotCollector(source))
    if process:
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
    return registry


def render(snap: Snapshot) -> bytes:
    """The text exposition of one snapshot alone (no process metrics)."""
    return generate_latest(make_registry(lambda: snap, process=False))


# --- the server -----------------------------------------------------------------


def bind(host: str, port: int, backlog: int = BACKLOG) -> socket.socket:
    """A non-blocking listening socket; `host` "" is every interface (IPv6 and IPv4 when the
    kernel has IPv6, else IPv4). MetricsUnavailable with one line when it cannot be had."""
    shown = display_address(host, port)
    try:
        if host == "":
            try:
                sock = socket.create_server(
                    ("::", port), family=socket.AF_INET6, backlog=backlog, dualstack_ipv6=True
                )
            except (OSError, ValueError) as exc:
                if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
                    raise
                sock = socket.create_server(("0.0.0.0", port), backlog=backlog)  # noqa: S104
        else:
            infos = socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE | socket.AI_NUMERICSERV
            )
            family, _kind, _proto, _name, address = infos[0]
            sock = socket.create_server(address[:2], family=family, backlog=backlog)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise MetricsUnavailable(f"cannot listen on {shown}: {reason.lower()}") from None
    sock.settimeout(0.0)
    return sock


class MetricsServer:
    """Serves `GET /metrics` on `loop` until `close()`.

    `snapshot()` is called at each scrape, on the Loop's thread, and must not
    block. With `depths`, a scrape first asks it for the queue depths (a read
    in a thread, at most once a second) and is answered when they come or at
    their timeout, with them in `Snapshot.queues`. The socket is bound in the
    constructor: MetricsUnavailable when it cannot be.
    """

    def __init__(
        self,
        loop: Loop,
        host: str,
        port: int,
        snapshot: Callable[[], Snapshot],
        *,
        depths: QueueDepths | None = None,
        max_connections: int = MAX_CONNECTIONS,
        deadline: float = DEADLINE,
        process_metrics: bool = True,
    ) -> None:
        self._loop = loop
        self._snapshot = snapshot
        self._depths = depths
        self._max_connections = max_connections
        self._deadline = deadline
        self._queues: tuple[QueueDepth, ...] = ()
        self._registry = make_registry(self._current, process=process_metrics)
        self._listener = bind(host, port)
        self._connections: set[_Connection] = set()
        self._paused: Timer | None = None
        self.rejected = 0  # connections closed at once because all slots were taken
        self.served = 0  # responses written in full
        self.last_error: BaseException | None = None  # the last failure to render
        self._loop.add_reader(self._listener, self._accept)

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port): the port is the real one when 0 was asked for."""
        name = self._listener.getsockname()
        return str(name[0]), int(name[1])

    @property
    def connections(self) -> int:
        return len(self._connections)

    def close(self) -> None:
        for connection in list(self._connections):
            connection.close()
        if self._paused is not None:
            self._paused.cancel()
        else:
            self._loop.remove_reader(self._listener)
        self._listener.close()

    def _current(self) -> Snapshot:
        return replace(self._snapshot(), queues=self._queues)

    def _accept(self) -> None:
        for _ in range(_ACCEPTS_PER_WAKEUP):
            try:
                sock, _peer = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # The pending connection stays readable: accepting again at once would spin.
                    self._loop.remove_reader(self._listener)
                    self._paused = self._loop.call_later(_PAUSE_ON_EMFILE, self._resume)
                    return
                continue  # ECONNABORTED and the like: that peer is gone, the next may not be
            if len(self._connections) >= self._max_connections:
                self.rejected += 1
                _reject(sock)
                continue
            sock.settimeout(0.0)
            self._connections.add(_Connection(self, sock))

    def _resume(self) -> None:
        self._paused = None
        self._loop.add_reader(self._listener, self._accept)

    def _forget(self, connection: _Connection) -> None:
        self._connections.discard(connection)

    def _respond_metrics(self, connection: _Connection, head_only: bool) -> None:
        if self._depths is None:
            self._write_metrics(connection, head_only)
            return

        def with_depths(depths: tuple[QueueDepth, ...]) -> None:
            self._queues = depths
            if not connection.closed:
                self._write_metrics(connection, head_only)

        self._depths.request(with_depths)

    def _write_metrics(self, connection: _Connection, head_only: bool) -> None:
        try:
            body = generate_latest(self._registry)
        except Exception as exc:  # noqa: BLE001 - a bad snapshot answers 500; supervision goes on
            self.last_error = exc
            connection.send_response(500, "Internal Server Error", b"cannot render metrics\n")
            return
        connection.send_response(200, "OK", body, content_type=CONTENT_TYPE, head_only=head_only)


def _reject(sock: socket.socket) -> None:
    # A fresh socket's send buffer is empty: this never blocks.
    with contextlib.suppress(OSError):
        sock.settimeout(0.0)
        sock.send(_response_bytes(503, "Service Unavailable", b"busy\n"))
    sock.close()


def _response_bytes(
    status: int,
    reason: str,
    body: bytes,
    *,
    content_type: str = "text/plain; charset=utf-8",
    head_only: bool = False,
    extra: str = "",
) -> bytes:
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"{extra}"
        "Connection: close\r\n"
        "\r\n"
    ).encode("ascii")
    return head if head_only else head + body


class _Connection:
    """One scraper: read a bounded head, answer, close; all of it before the deadline."""

    def __init__(self, server: MetricsServer, sock: socket.socket) -> None:
        self._server = server
        self._loop = server._loop
        self._sock = sock
        self._head = bytearray()
        self._out = memoryview(b"")
        self._status = 0
        self._reading = True
        self._writing = False
        self.closed = False
        self._timer = self._loop.call_later(server._deadline, self.close)
        self._loop.add_reader(sock, self._on_readable)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._timer.cancel()
        self._stop_reading()
        if self._writing:
            self._loop.remove_writer(self._sock)
            self._writing = False
        self._sock.close()
        self._server._forget(self)

    def _stop_reading(self) -> None:
        if self._reading:
            self._loop.remove_reader(self._sock)
            self._reading = False

    def _on_readable(self) -> None:
        try:
            chunk = self._sock.recv(_RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        if not chunk:
            self.close()
            return
        self._head += chunk
        end = _end_of_head(self._head)
        if end < 0:
            if len(self._head) > MAX_HEAD:
                self._stop_reading()
                self.send_response(431, "Request Header Fields Too Large", b"head too large\n")
            return
        if end > MAX_HEAD:
            self._stop_reading()
            self.send_response(431, "Request Header Fields Too Large", b"head too large\n")
            return
        self._stop_reading()
        self._dispatch(bytes(self._head[:end]))

    def _dispatch(self, head: bytes) -> None:
        line = head.split(b"\n", 1)[0].rstrip(b"\r")
        parts = line.split(b" ")
        if len(parts) != 3 or not parts[1]:
            self.send_response(400, "Bad Request", b"bad request line\n")
            return
        method, target, version = parts
        if version not in (b"HTTP/1.0", b"HTTP/1.1"):
            if version.startswith(b"HTTP/"):
                self.send_response(505, "HTTP Version Not Supported", b"HTTP/1.0 or 1.1\n")
            else:
                self.send_response(400, "Bad Request", b"bad request line\n")
            return
        path = target.split(b"?", 1)[0]
        if path not in (b"/metrics", b"/"):
            self.send_response(404, "Not Found", b"not found: try /metrics\n")
            return
        if method not in (b"GET", b"HEAD"):
            self.send_response(
                405, "Method Not Allowed", b"GET only\n", extra="Allow: GET, HEAD\r\n"
            )
            return
        head_only = method == b"HEAD"
        if path == b"/":
            text = b"entrypoint: Prometheus metrics at /metrics\n"
            self.send_response(200, "OK", text, head_only=head_only)
            return
        self._server._respond_metrics(self, head_only)

    def send_response(
        self,
        status: int,
        reason: str,
        body: bytes,
        *,
        content_type: str = "text/plain; charset=utf-8",
        head_only: bool = False,
        extra: str = "",
    ) -> None:
        if self.closed:
            return
        data = _response_bytes(
            status, reason, body, content_type=content_type, head_only=head_only, extra=extra
        )
        self._out = memoryview(data)
        self._status = status
        self._on_writable()
        if not self.closed and not self._writing:
            self._loop.add_writer(self._sock, self._on_writable)
            self._writing = True

    def _on_writable(self) -> None:
        try:
            sent = self._sock.send(self._out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        self._out = self._out[sent:]
        if not self._out:
            if self._status == 200:
                self._server.served += 1
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_WR)
            self.close()


def _end_of_head(data: bytearray) -> int:
    """The index just past the blank line that ends an HTTP head, or -1."""
    crlf = data.find(b"\r\n\r\n")
    lf = data.find(b"\n\n")
    ends = [i + 4 for i in (crlf,) if i >= 0] + [i + 2 for i in (lf,) if i >= 0]
    return min(ends) if ends else -1


__all__ = [
    "EXIT_REASONS",
    "MetricsServer",
    "MetricsUnavailable",
    "Snapshot",
    "SnapshotCollector",
    "bind",
    "families",
    "make_registry",
    "render",
]
