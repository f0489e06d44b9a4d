"""A listen address (`ENTRYPOINT_METRICS_ADDR`) -> (host, port).

Pure and builtins only: it is on web mode's start path, whose budget is a bare
interpreter start (no `re`, no `ipaddress`, no `dataclasses`). The host is
checked for its shape only; binding it is the runtime's business.
"""

from __future__ import annotations

FORMS = "PORT, :PORT, HOST:PORT or [IPV6]:PORT (e.g. 9464, :9464, 127.0.0.1:9464, [::1]:9464)"

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_")
_IPV6_CHARS = frozenset("0123456789abcdefABCDEF:.")


def _shown(value: str) -> str:
    return repr(value) if len(value) <= 60 else repr(value[:60] + "...")


def parse_listen_address(value: str, source: str = "ENTRYPOINT_METRICS_ADDR") -> tuple[str, int]:
    """`9464` / `:9464` -> ("", 9464) (every interface); `HOST:PORT`; `[IPV6]:PORT`.

    ValueError with one line naming `source`, the value (escaped) and the
    accepted forms.
    """
    text = value.strip()
    if not text:
        raise ValueError(f"{source}: empty: expected {FORMS}")
    if text.startswith("["):
        close = text.find("]")
        host = text[1:close] if close > 0 else ""
        rest = text[close + 1 :] if close > 0 else ""
        if close < 0 or not _is_ipv6_shape(host):
            raise ValueError(
                f"{source}: {_shown(value)} has no valid IPv6 address in brackets: expected {FORMS}"
            )
        if not rest.startswith(":"):
            raise ValueError(f"{source}: {_shown(value)} has no port: expected {FORMS}")
        port_text = rest[1:]
    elif ":" in text:
        host, _, port_text = text.rpartition(":")
        if ":" in host:
            raise ValueError(
                f"{source}: {_shown(value)}: write an IPv6 host in brackets, e.g. [::1]:9464"
            )
        if host and not _is_name_shape(host):
            raise ValueError(
                f"{source}: {_shown(value)} has no valid host name or address: expected {FORMS}"
            )
    else:
        host, port_text = "", text
    return host, _port(port_text, value, source)


def _port(text: str, value: str, source: str) -> int:
    if not text:
        raise ValueError(f"{source}: {_shown(value)} has no port: expected {FORMS}")
    if not (text.isascii() and text.isdigit()) or len(text) > 5:
        raise ValueError(f"{source}: {_shown(value)}: the port is not a number: expected {FORMS}")
    port = int(text)
    if not 1 <= port <= 65535:
        raise ValueError(f"{source}: {_shown(value)}: the port {port} is outside 1..65535")
    return port


def _is_name_shape(host: str) -> bool:
    return (
        host[0] not in ".-"
        and host[-1] not in ".-"
        and all(c in _NAME_CHARS for c in host)
        and ".." not in host
    )


def _is_ipv6_shape(host: str) -> bool:
    address, _, zone = host.partition("%")
    if "%" in host and not (zone and _is_name_shape(zone)):
        return False
    return address.count(":") >= 2 and all(c in _IPV6_CHARS for c in address)


def display_address(host: str, port: int) -> str:
    """How a bound or configured address is shown: `[::1]:9464`, `:9464` for every interface."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
