"""A TCP proxy on loopback that a test can cut, to play a network partition.

`cut()` stops all forwarding, both ways, without closing anything: bytes stay
in the kernel's buffers, as they stay in flight during a real partition, and
connections made while cut are accepted by the kernel and then left silent.
`restore()` forwards again (what was sent during the cut arrives then, as
after TCP retransmission). `reset()` closes every connection at once.

Caveat of any user-space proxy: the server's peer is the proxy's socket, whose
kernel keeps acknowledging TCP keepalives; only an application-level timeout
on the server side (PostgreSQL's idle_session_timeout, say) notices the cut.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import threading
from typing import Self


class TcpProxy:
    """Forwards 127.0.0.1:`port` to `upstream`; run it with `with TcpProxy(...) as proxy:`."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.setblocking(False)  # noqa: FBT003 - socket's own API
        self.host, self.port = self._listener.getsockname()[:2]
        self._pairs: dict[socket.socket, socket.socket] = {}
        self._lock = threading.Lock()
        self._cut = False
        self._closed = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self.accepted = 0
        self._thread = threading.Thread(target=self._run, name="tcp-proxy", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def url(self, scheme: str, path: str = "", userinfo: str = "") -> str:
        at = f"{userinfo}@" if userinfo else ""
        return f"{scheme}://{at}{self.host}:{self.port}{path}"

    def cut(self) -> None:
        self._set(cut=True)

    def restore(self) -> None:
        self._set(cut=False)

    def reset(self) -> None:
        """Close every proxied connection now (both sides see the connection end)."""
        with self._lock:
            pairs, self._pairs = dict(self._pairs), {}
        for sock in pairs:
            _close(sock)
        self._wake()

    def close(self) -> None:
        self._set(cut=True)
        self._closed = True
        self._wake()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self.reset()
        self._listener.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self._pairs) // 2

    def _set(self, *, cut: bool) -> None:
        with self._lock:
            self._cut = cut
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"\0")

    def _run(self) -> None:
        while not self._closed:
            with selectors.DefaultSelector() as selector:
                selector.register(self._wake_r, selectors.EVENT_READ)
                with self._lock:
                    if not self._cut:
                        selector.register(self._listener, selectors.EVENT_READ)
                        for sock in self._pairs:
                            selector.register(sock, selectors.EVENT_READ)
                ready = selector.select()
            for key, _events in ready:
                if key.fileobj == self._wake_r:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 4096)
                elif key.fileobj is self._listener:
                    self._accept()
                elif isinstance(key.fileobj, socket.socket):
                    self._pump(key.fileobj)

    def _accept(self) -> None:
        try:
            client, _ = self._listener.accept()
        except BlockingIOError:
            return
        try:
            server = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            _close(client)
            return
        client.settimeout(None)
        server.settimeout(None)
        with self._lock:
            self._pairs[client] = server
            self._pairs[server] = client
            self.accepted += 1

    def _pump(self, sock: socket.socket) -> None:
        with self._lock:
            if self._cut:
                return
            peer = self._pairs.get(sock)
        if peer is None:
            return
        try:
            data = sock.recv(65536)
            if data:
                peer.sendall(data)
                return
        except OSError:
            pass
        with self._lock:
            self._pairs.pop(sock, None)
            self._pairs.pop(peer, None)
        _close(sock)
        _close(peer)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
