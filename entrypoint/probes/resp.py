"""A minimal Redis (RESP2) client over a socket, for probes and the leader lease.

Only what those need: send one command, read one reply. No pooling, no pipelining.
"""

from __future__ import annotations

import socket
import ssl
from typing import Union

Reply = Union[str, int, bytes, None, list["Reply"], "RedisReplyError"]


class RedisReplyError(Exception):
    """A `-ERR ...` reply: the server answered, and said no."""

    @property
    def code(self) -> str:
        return str(self.args[0]).split(" ", 1)[0]


class RedisProtocolError(Exception):
    """The peer does not speak RESP (or closed the connection mid-reply)."""


class RedisConnection:
    """One connection; every read and write is bounded by `timeout` seconds."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        timeout: float,
        tls: bool = False,
        server_hostname: str | None = None,
    ) -> None:
        sock = socket.create_connection((host, port), timeout=timeout)
        if tls:
            context = ssl.create_default_context()
            sock = context.wrap_socket(sock, server_hostname=server_hostname or host)
        sock.settimeout(timeout)
        self._sock = sock
        self._file = sock.makefile("rb")

    @classmethod
    def from_socket(cls, sock: socket.socket) -> RedisConnection:
        """A client over a socket the caller connected (and bounds) itself."""
        connection = cls.__new__(cls)
        connection._sock = sock
        connection._file = sock.makefile("rb")
        return connection

    def __enter__(self) -> RedisConnection:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()
        self._sock.close()

    def settimeout(self, timeout: float) -> None:
        self._sock.settimeout(timeout)

    def command(self, *args: str | bytes | int) -> Reply:
        """Send one command and return its reply; `-ERR` replies raise RedisReplyError."""
        self._sock.sendall(encode_command(*args))
        reply = self._read_reply()
        if isinstance(reply, RedisReplyError):
            raise reply
        return reply

    def _read_line(self) -> bytes:
        line = self._file.readline(65536)
        if not line.endswith(b"\r\n"):
            raise RedisProtocolError("connection closed" if not line else "not a RESP reply")
        return line[:-2]

    def _read_reply(self) -> Reply:
        line = self._read_line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode("utf-8", "replace")
        if kind == b"-":
            return RedisReplyError(rest.decode("utf-8", "replace"))
        if kind in (b":", b"$", b"*"):
            try:
                number = int(rest)
            except ValueError:
                raise RedisProtocolError("not a RESP reply") from None
            if kind == b":":
                return number
            if number < 0:
                return None
            if kind == b"$":
                data = self._file.read(number + 2)
                if len(data) != number + 2:
                    raise RedisProtocolError("connection closed")
                return data[:-2]
            return [self._read_reply() for _ in range(number)]
        raise RedisProtocolError("not a RESP reply")


def encode_command(*args: str | bytes | int) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)
