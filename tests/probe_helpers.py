"""Helpers for the dependency tests: a fake inbox, loopback servers, bounded polling."""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from types import TracebackType

from tests.helpers import wait_until
from tests.servers import missing

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def closed_port() -> int:
    """A loopback port nothing listens on (bound once, then released)."""
    return free_port()


def require_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        missing(f"the {name} binary is not installed")
        raise AssertionError  # unreachable: missing() skips or fails
    return path


class FakeInbox:
    """The waiting Inbox protocol over a condition variable (no signal handlers)."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._pending: list[int] = []
        self._received: list[int] = []
        self._notified = False
        self.waits = 0

    def send(self, signum: int) -> None:
        """As if `signum` had been received (from any thread)."""
        with self._condition:
            self._pending.append(signum)
            self._received.append(signum)
            self._condition.notify_all()

    def notify(self) -> None:
        with self._condition:
            self._notified = True
            self._condition.notify_all()

    def wait(self, timeout: float | None) -> None:
        with self._condition:
            self.waits += 1
            if not self._pending and not self._notified:
                self._condition.wait(timeout)
            self._notified = False

    def take(self) -> list[int]:
        with self._condition:
            taken, self._pending = self._pending, []
            return taken

    @property
    def stop_requested(self) -> bool:
        with self._condition:
            return any(s in STOP_SIGNALS for s in self._received)


class LoopbackServer:
    """A TCP server on 127.0.0.1 whose every connection is handled by `handler`.

    `handler(conn, stop)` runs in its own thread; `stop` is set when the server
    closes, so handlers wait on it instead of sleeping.
    """

    def __init__(self, handler: Callable[[socket.socket, threading.Event], None]) -> None:
        self.handler = handler
        self.stop = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.connections = 0
        self._threads: list[threading.Thread] = []
        self._accepter = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> LoopbackServer:
        self._accepter.start()
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.stop.set()
        self.listener.close()
        self._accepter.join(2)
        for thread in self._threads:
            thread.join(2)

    def _accept(self) -> None:
        self.listener.settimeout(0.05)
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            self.handler(conn, self.stop)


# -- hostile behaviours --------------------------------------------------------------


def silent(conn: socket.socket, stop: threading.Event) -> None:
    """Accepts, reads whatever comes, says nothing."""
    conn.settimeout(0.05)
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            if not conn.recv(4096):
                stop.wait()


GARBAGE = b"\x17\x03\x01\x00\x10\xde\xad\xbe\xef garbage \xff\xfe\x00\x01 not a protocol\n"


def garbage(conn: socket.socket, stop: threading.Event) -> None:
    """Sends bytes of no protocol at once, then stays open."""
    conn.sendall(GARBAGE)
    silent(conn, stop)


def close_at_once(conn: socket.socket, _stop: threading.Event) -> None:
    conn.close()


def dripping(
    interval: float, data: bytes = b"+PONG-INFO-HTTP/1.1-"
) -> Callable[[socket.socket, threading.Event], None]:
    """Sends `data` over and over, one byte every `interval` seconds."""

    def handler(conn: socket.socket, stop: threading.Event) -> None:
        index = 0
        while not stop.wait(interval):
            conn.sendall(data[index % len(data) : index % len(data) + 1])
            index += 1

    return handler


def speaks_http(conn: socket.socket, stop: threading.Event) -> None:
    """Answers anything (or nothing, after a moment) with an HTTP 400, then closes."""
    conn.settimeout(0.2)
    with contextlib.suppress(TimeoutError):
        conn.recv(4096)
    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


def scripted(
    *exchanges: tuple[bytes | None, bytes],
) -> Callable[[socket.socket, threading.Event], None]:
    """A well-behaved fake: for each (expected prefix or None, reply), read then reply."""

    def handler(conn: socket.socket, stop: threading.Event) -> None:
        conn.settimeout(2)
        for expected, reply in exchanges:
            if expected is not None:
                received = b""
                while len(received) < len(expected):
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    received += chunk
                assert received.startswith(expected), received
            conn.sendall(reply)
        silent(conn, stop)

    return handler


# -- private server processes ---------------------------------------------------------


@contextlib.contextmanager
def process(
    argv: list[str], *, ready: Callable[[], bool], timeout: float = 20
) -> Iterator[subprocess.Popen[bytes]]:
    """Start `argv`, wait until `ready()`, and stop it (TERM, then KILL) at the end."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not wait_until(lambda: ready() or proc.poll() is not None, timeout) or proc.poll():
            raise AssertionError(f"{argv[0]} did not start (status {proc.poll()})")
        yield proc
    finally:
        stop_process(proc)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False
