"""Sockets for probes: one deadline per attempt, and nothing blocks past it.

Every socket an attempt opens is watched: when the attempt's time is up, a timer
shuts it down, which wakes any read blocked in it (including reads inside a
driver or a buffered file), so a server that answers one byte a second cannot
stretch an attempt. Name resolution runs in a daemon thread for the same reason:
`getaddrinfo` has no timeout of its own.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable
from types import TracebackType

AddrInfo = tuple[socket.AddressFamily, socket.SocketKind, int, str, tuple[object, ...]]


class ProbeError(Exception):
    """One failed attempt. `str(exc)` is the reason, already free of secrets.

    `permanent` failures (credentials refused, no such database) are not retried.
    """

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent

    @property
    def message(self) -> str:
        return str(self.args[0])


def not_the_protocol(what: str, data: bytes = b"") -> ProbeError:
    """The peer answered, but not in `what`'s protocol: transient (it may be a proxy
    answering before its backend is up, or another service still on the port)."""
    seen = f": it sent {preview(data)}" if data else ""
    return ProbeError(f"the server does not speak {what}{seen}")


def preview(data: bytes, limit: int = 32) -> str:
    """The first bytes a peer sent, printable and short."""
    text = data[:limit].decode("ascii", "backslashreplace")
    shown = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)
    return "'" + shown + ("..." if len(data) > limit else "") + "'"


class Attempt:
    """The time budget of one probe attempt, and the sockets it opened.

    Use as a context manager: on exit every socket is closed and the timer cancelled.
    `step` names what the attempt is doing, for the message when time runs out.
    """

    def __init__(self, timeout: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout = max(timeout, 0.0)
        self.step = "connecting"
        self._clock = clock
        self._deadline = clock() + self.timeout
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._expired = False
        self._timer: threading.Timer | None = None

    def __enter__(self) -> Attempt:
        self._timer = threading.Timer(self.timeout, self._expire)
        self._timer.daemon = True
        self._timer.start()
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        if self._timer is not None:
            self._timer.cancel()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            sock.close()

    @property
    def remaining(self) -> float:
        return max(0.0, self._deadline - self._clock())

    @property
    def expired(self) -> bool:
        return self._expired or self.remaining <= 0

    def left(self) -> float:
        """The time left; TimeoutError when there is none."""
        remaining = self.remaining
        if remaining <= 0 or self._expired:
            raise TimeoutError(self.step)
        return remaining

    def timed_out(self) -> ProbeError:
        return ProbeError(f"timed out after {self.timeout:g} s ({self.step})")

    def watch(self, sock: socket.socket) -> None:
        """Shut `sock` down when the attempt's time is up (and close it at the end)."""
        with self._lock:
            self._sockets.append(sock)
            expired = self._expired
        if expired:
            _shutdown(sock)

    def _expire(self) -> None:
        with self._lock:
            self._expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shutdown(sock)

    def resolve(self, host: str, port: int) -> list[AddrInfo]:
        """getaddrinfo, bounded by the attempt's time (the lookup thread is abandoned)."""
        try:
            ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            return _getaddrinfo(host, port)
        self.step = f"resolving {host}"
        done = threading.Event()
        outcome: list[list[AddrInfo] | OSError] = []

        def lookup() -> None:
            try:
                outcome.append(_getaddrinfo(host, port))
            except OSError as exc:
                outcome.append(exc)
            done.set()

        threading.Thread(target=lookup, name=f"resolve {host}", daemon=True).start()
        if not done.wait(self.left()):
            raise TimeoutError(self.step)
        result = outcome[0]
        if isinstance(result, OSError):
            raise result
        return result

    def connect(
        self,
        host: str,
        port: int,
        *,
        tls: ssl.SSLContext | None = None,
    ) -> socket.socket:
        """A connected (and, with `tls`, TLS-wrapped) socket to host:port, watched."""
        addresses = self.resolve(host, port)
        self.step = f"connecting to {host}:{port}"
        error: OSError | None = None
        for family, kind, proto, _name, address in addresses:
            sock = socket.socket(family, kind, proto)
            self.watch(sock)
            try:
                sock.settimeout(self.left())
                sock.connect(address)
            except OSError as exc:
                sock.close()
                error = exc
                if self.expired:
                    break
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return self.start_tls(sock, tls, host) if tls is not None else sock
        raise error if error is not None else OSError(f"no address for {host}")

    def start_tls(self, sock: socket.socket, context: ssl.SSLContext, host: str) -> ssl.SSLSocket:
        """Wrap a connected socket in TLS, the handshake bounded like any read."""
        self.step = "TLS handshake"
        server_hostname = host if context.check_hostname else None
        wrapped = context.wrap_socket(
            sock, server_hostname=server_hostname, do_handshake_on_connect=False
        )
        self.watch(wrapped)
        wrapped.settimeout(self.left())
        wrapped.do_handshake()
        return wrapped


def _getaddrinfo(host: str, port: int) -> list[AddrInfo]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [(f, k, p, n, tuple(a)) for f, k, p, n, a in infos]


def _shutdown(sock: socket.socket) -> None:
    # The plain socket's shutdown, also for an SSLSocket: SSLSocket.shutdown would
    # drop the SSL object under the feet of the thread blocked reading it.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class Stream:
    """Buffered reads and writes on one socket, each bounded by the attempt's deadline."""

    def __init__(self, attempt: Attempt, sock: socket.socket) -> None:
        self.attempt = attempt
        self.sock = sock
        self._buffer = bytearray()

    @property
    def received(self) -> bytes:
        """What is buffered and not yet consumed (for messages about a wrong protocol)."""
        return bytes(self._buffer)

    def send(self, data: bytes) -> None:
        self.sock.settimeout(self.attempt.left())
        self.sock.sendall(data)

    def _fill(self) -> None:
        self.sock.settimeout(self.attempt.left())
        chunk = self.sock.recv(65536)
        if not chunk:
            if self.attempt.expired:
                raise TimeoutError(self.attempt.step)
            raise ProbeError(self._closed_message())
        self._buffer += chunk

    def _closed_message(self) -> str:
        if self._buffer:
            return f"the server closed the connection after sending {preview(self.received)}"
        return "the server closed the connection"

    def peek(self, size: int) -> bytes:
        """The next `size` bytes, left in the buffer (fewer if the server closes)."""
        while len(self._buffer) < size:
            self._fill()
        return bytes(self._buffer[:size])

    def read_exact(self, size: int) -> bytes:
        while len(self._buffer) < size:
            self._fill()
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def read_line(self, limit: int, *, what: str, terminator: bytes = b"\r\n") -> bytes:
        """One line without its terminator; `not_the_protocol(what)` past `limit` bytes."""
        start = 0
        while True:
            index = self._buffer.find(terminator, start)
            if index >= 0:
                line = bytes(self._buffer[:index])
                del self._buffer[: index + len(terminator)]
                return line
            if len(self._buffer) > limit:
                raise not_the_protocol(what, self.received)
            start = max(0, len(self._buffer) - len(terminator) + 1)
            self._fill()


def tls_context(verify: bool = True) -> ssl.SSLContext:
    """The system's default TLS context, or one that checks nothing (opt-in per URL)."""
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def verify_tls(options: tuple[tuple[str, str], ...]) -> bool:
    """False when the URL opts out of certificate checks, in any of the usual spellings."""
    for name, setting in options:
        key, value = name.lower(), setting.lower()
        if key == "ssl_cert_reqs" and value in ("none", "cert_none"):
            return False
        if key == "verify" and value == "verify_none":
            return False
        if key in ("insecure", "tls_insecure") and value in ("", "1", "true", "yes"):
            return False
    return True
