"""A dependency's URL -> a frozen `Dependency`: the one URL grammar of the program.

Pure: no socket, no file, no clock. Probes, the lease and `explain` all use
the values parsed here, so that no part of a URL (a password above all) is ever
read twice, or differently. No message quotes a password, a token, or a piece
of a URL that could be one (a port or host misparsed out of an unencoded password).
"""

from __future__ import annotations

from entrypoint.errors import ConfigError
from entrypoint.records import StrEnum, dataclass, field


class Depth(StrEnum):
    """How far a probe goes: what "ready" proves about the dependency."""

    CONNECT = "connect"  # a TCP connection is accepted
    HANDSHAKE = "handshake"  # the server speaks its protocol
    AUTHENTICATED = "authenticated"  # the server accepted our credentials (and database)
    FILE = "file"  # a local file (SQLite)
    HTTP = "http"  # an HTTP status below 500


class Scheme(StrEnum):
    REDIS = "redis"
    REDISS = "rediss"
    POSTGRESQL = "postgresql"
    MYSQL = "mysql"
    AMQP = "amqp"
    AMQPS = "amqps"
    NATS = "nats"
    SQLITE = "sqlite"
    TCP = "tcp"
    HTTP = "http"
    HTTPS = "https"
    BEANSTALKD = "beanstalkd"
    SQLSERVER = "sqlserver"


SCHEME_ALIASES: dict[str, Scheme] = {
    **{scheme.value: scheme for scheme in Scheme},
    "postgres": Scheme.POSTGRESQL,
    "pgsql": Scheme.POSTGRESQL,
    "mariadb": Scheme.MYSQL,
    "mysql2": Scheme.MYSQL,
    "sqlite3": Scheme.SQLITE,
    "beanstalk": Scheme.BEANSTALKD,
    "mssql": Scheme.SQLSERVER,
    "sqlsrv": Scheme.SQLSERVER,
}

DEFAULT_PORTS: dict[Scheme, int] = {
    Scheme.REDIS: 6379,
    Scheme.REDISS: 6379,
    Scheme.POSTGRESQL: 5432,
    Scheme.MYSQL: 3306,
    Scheme.AMQP: 5672,
    Scheme.AMQPS: 5671,
    Scheme.NATS: 4222,
    Scheme.HTTP: 80,
    Scheme.HTTPS: 443,
    Scheme.BEANSTALKD: 11300,
    Scheme.SQLSERVER: 1433,
}

# Schemes whose lone userinfo (`nats://TOKEN@host`, `https://TOKEN@host`) is a secret.
TOKEN_SCHEMES = frozenset({Scheme.NATS, Scheme.HTTP, Scheme.HTTPS})
_HTTP_SCHEMES = frozenset({Scheme.HTTP, Scheme.HTTPS})
_LONE_USER_SECRET = TOKEN_SCHEMES | {Scheme.REDIS, Scheme.REDISS}
_DATABASE_SCHEMES = frozenset({Scheme.POSTGRESQL, Scheme.MYSQL, Scheme.SQLSERVER})


MASK = "***"
_EXAMPLE = "e.g. redis://redis:6379/0"
_SCHEME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-"
_HOST_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-"
_UNRESERVED = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-~"
_HEX = "0123456789abcdefABCDEF"
# Drivers an authenticated probe needs, and the extra that installs each.
DRIVERS = {"psycopg": "entrypoint[postgres]", "pymysql": "entrypoint[mysql]"}
_drivers_found: dict[str, bool] = {}


def driver_available(module: str) -> bool:
    """Whether an optional driver (psycopg, pymysql) can be imported; looked up once."""
    if module not in _drivers_found:
        import importlib.util

        _drivers_found[module] = importlib.util.find_spec(module) is not None
    return _drivers_found[module]


def scheme_prefix(text: str) -> str | None:
    """The scheme of `scheme:rest` as written, if `text` starts with one."""
    colon = text.find(":")
    if colon <= 0 or not text[0].isascii() or not text[0].isalpha():
        return None
    written = text[:colon]
    return written if all(c in _SCHEME_CHARS for c in written) else None


def is_host_name(text: str) -> bool:
    """A host name or IPv4 address as the grammar takes it: `[A-Za-z0-9_]([-.\\w]*[.\\w])?`."""
    return (
        bool(text)
        and all(c in _HOST_CHARS for c in text)
        and text[0] not in ".-"
        and text[-1] != "-"
    )


def is_port(text: str) -> bool:
    return 1 <= len(text) <= 5 and text.isascii() and text.isdigit()


def is_ipv6(text: str) -> bool:
    import _socket  # an extension module: loaded only for an IPv6 host

    try:
        _socket.inet_pton(_socket.AF_INET6, text)
    except (OSError, ValueError):
        return False
    return True


def is_bare_host_port(text: str) -> bool:
    """`host:port` or `[v6]:port` without a scheme (a TCP check in ENTRYPOINT_WAIT_FOR)."""
    host, colon, port = text.rpartition(":")
    if not colon or not is_port(port) or not host:
        return False
    if host.startswith("[") and host.endswith("]"):
        return len(host) > 2 and all(c in _HEX + ":." for c in host[1:-1])
    return all(c in _HOST_CHARS for c in host)


def percent_decode(text: str) -> str:
    """%XX escapes decoded as UTF-8 (bad bytes replaced); a stray '%' stays (as urllib)."""
    if "%" not in text:
        return text
    out = bytearray()
    i = 0
    while i < len(text):
        char = text[i]
        if char == "%" and i + 2 < len(text) and all(c in _HEX for c in text[i + 1 : i + 3]):
            out.append(int(text[i + 1 : i + 3], 16))
            i += 3
        else:
            out += char.encode()
            i += 1
    return out.decode("utf-8", "replace")


def percent_encode(text: str, safe: str = "") -> str:
    """Every byte but the unreserved ones (and `safe`) as %XX, as urllib's quote."""
    keep = _UNRESERVED + safe
    return "".join(
        char if char in keep else "".join(f"%{byte:02X}" for byte in char.encode()) for char in text
    )


def parse_query(query: str) -> tuple[tuple[str, str], ...]:
    """`a=1&b` -> (("a", "1"), ("b", "")), '+' as a blank, as urllib's parse_qsl."""
    pairs = []
    for part in query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        pairs.append(
            (percent_decode(name.replace("+", " ")), percent_decode(value.replace("+", " ")))
        )
    return tuple(pairs)


@dataclass(frozen=True, repr=False)
class Dependency:
    """One thing to wait for. `url` and `password` are never printed: use `display`."""

    source: str
    url: str = field(repr=False)
    scheme: Scheme
    host: str
    port: int | None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    database: str | None = None  # db name, Redis db number, AMQP vhost, SQLite path
    path: str = "/"  # HTTP request target (path and query)
    options: tuple[tuple[str, str], ...] = ()  # query parameters, decoded

    def __repr__(self) -> str:
        return f"Dependency(source={self.source!r}, display={self.display!r})"

    def option(self, name: str, default: str | None = None) -> str | None:
        for key, value in self.options:
            if key == name:
                return value
        return default

    @property
    def secrets(self) -> tuple[str, ...]:
        """The values that must never be shown (masked wherever they appear).

        A lone userinfo is one where it is a token (`nats://TOKEN@host`,
        `https://TOKEN@host`) or likely a password written without its colon
        (`redis://PASSWORD@host`); on the others it is a user or role name,
        masked in the URL (`display`) but not in a server's message about it. A
        password equal to its own user name is not a secret of its own.
        """
        found = [self.password or ""] if self.password != self.username else []
        if self.password is None and self.scheme in _LONE_USER_SECRET:
            found.append(self.username or "")
        return tuple(s for s in found if len(s) >= 3)

    @property
    def display(self) -> str:
        """The URL with its secrets masked: safe in logs, errors and `explain`.

        Built from the parsed parts, so nothing that was not understood is shown;
        a lone userinfo is masked whole (it may be a password or a token).
        """
        if self.scheme is Scheme.SQLITE:
            path = self.database or ""
            return f"sqlite://{path}" if path.startswith("/") else f"sqlite:{path}"  # no userinfo
        userinfo = ""
        if self.password is not None:
            userinfo = f"{percent_encode(self.username or '')}:{MASK}@"
        elif self.username is not None:
            userinfo = f"{MASK}@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = f":{self.port}" if self.port is not None else ""
        tail = ""
        if self.scheme in _HTTP_SCHEMES:
            tail = _mask_query(self.path)
        elif self.scheme in (Scheme.AMQP, Scheme.AMQPS):
            tail = "" if self.database in (None, "/") else "/" + percent_encode(self.database)
        elif self.database is not None:
            tail = "/" + percent_encode(self.database)
        return f"{self.scheme}://{userinfo}{host}{port}{tail}"

    @property
    def unverified(self) -> str | None:
        """Why credentials given with this URL cannot be checked by its probe, if so."""
        needs = {Scheme.POSTGRESQL: "psycopg", Scheme.MYSQL: "pymysql"}.get(self.scheme)
        credentials = self.password is not None or (
            self.scheme is Scheme.MYSQL and self.username is not None
        )
        if needs is None or not credentials or driver_available(needs):
            return None
        return f"credentials not verified: install {DRIVERS[needs]}"

    def to_json(self) -> dict[str, object]:
        """What `explain --json` shows: no user name (it may be a token), no password."""
        return {
            "source": self.source,
            "dependency": self.display,
            "scheme": str(self.scheme),
            "host": self.host or None,
            "port": self.port,
            "database": self.database,
            "depth": str(self.depth),
            "credentials": self.username is not None or self.password is not None,
        }

    @property
    def depth(self) -> Depth:
        """The depth this dependency gets, given its credentials and the drivers installed."""
        scheme = self.scheme
        if scheme is Scheme.SQLITE:
            return Depth.FILE
        if scheme in _HTTP_SCHEMES:
            return Depth.HTTP
        if scheme is Scheme.TCP:
            return Depth.CONNECT
        if scheme in (Scheme.REDIS, Scheme.REDISS):
            authenticated = self.password is not None
        elif scheme is Scheme.POSTGRESQL:
            authenticated = self.password is not None and driver_available("psycopg")
        elif scheme is Scheme.MYSQL:
            # A user name alone is a credential too (an empty password is common in
            # development), and only a login can tell an unknown database.
            credentials = self.username is not None or self.password is not None
            authenticated = credentials and driver_available("pymysql")
        elif scheme in (Scheme.AMQP, Scheme.AMQPS):
            authenticated = self.username is not None
        elif scheme is Scheme.NATS:
            authenticated = self.username is not None or self.password is not None
        else:
            authenticated = False
        return Depth.AUTHENTICATED if authenticated else Depth.HANDSHAKE


def parse_url(value: str, source: str) -> Dependency:
    """One URL -> Dependency; ConfigError naming `source` and what is wrong, never the secret."""
    text = value.strip()
    prefix = scheme_prefix(text)
    if prefix is None:
        raise ConfigError(f"{source}: not a URL: expected scheme://host[:port]/..., {_EXAMPLE}")
    written = prefix.lower()
    scheme = SCHEME_ALIASES.get(written)
    if scheme is None:
        known = ", ".join(s.value for s in Scheme)
        shown = f" {written!r}" if len(written) <= 20 else ""
        raise ConfigError(f"{source}: unknown scheme{shown}: expected one of {known}")
    rest = text[len(prefix) + 1 :]
    if scheme is Scheme.SQLITE:
        return _parse_sqlite(text, rest, source)
    if not rest.startswith("//"):
        raise ConfigError(f"{source}: expected {written}://host[:port]..., {_EXAMPLE}")
    userinfo, hostport, tail = _split_authority(rest[2:], scheme)
    username, password = _split_userinfo(userinfo)
    host, port = _parse_host_port(hostport, scheme, source)
    path_query = tail.partition("#")[0]
    path, _, query = path_query.partition("?")
    options = parse_query(query)
    database: str | None = None
    request = "/"
    if scheme in (Scheme.REDIS, Scheme.REDISS):
        number = path.strip("/")
        if number and not (number.isascii() and number.isdigit()):
            raise ConfigError(f"{source}: the Redis database (the path /N) must be a number")
        database = number or None
    elif scheme in _DATABASE_SCHEMES:
        database = percent_decode(path[1:]) or None
    elif scheme in (Scheme.AMQP, Scheme.AMQPS):
        database = percent_decode(path[1:]) if len(path) > 1 else "/"
    elif scheme in _HTTP_SCHEMES:
        request = (path or "/") + (f"?{query}" if query else "")
    return Dependency(
        source=source,
        url=text,
        scheme=scheme,
        host=host,
        port=port,
        username=username,
        password=password,
        database=database,
        path=request,
        options=options,
    )


def _split_authority(rest: str, scheme: Scheme) -> tuple[str | None, str, str]:
    """(userinfo, host[:port], path...) of what follows `scheme://`.

    A password may hold an unencoded '@', '/', '?' or '#': the userinfo then runs
    to the last '@'. Paths of these schemes never hold an '@'; HTTP paths may, so
    there the standard split wins whenever it yields a valid host.
    """
    end = _first_of(rest, "/?#")
    authority = rest[:end]
    if scheme in _HTTP_SCHEMES:
        userinfo, at, hostport = authority.rpartition("@")
        if _plausible_host_port(hostport) or "@" not in rest:
            return (userinfo if at else None), hostport, rest[end:]
    at_index = rest.rfind("@")
    if at_index < 0:
        return None, authority, rest[end:]
    after = rest[at_index + 1 :]
    cut = _first_of(after, "/?#")
    return rest[:at_index], after[:cut], after[cut:]


def _first_of(text: str, chars: str) -> int:
    return min((i for i in (text.find(c) for c in chars) if i >= 0), default=len(text))


def _plausible_host_port(hostport: str) -> bool:
    if hostport.startswith("["):
        return "]" in hostport
    host, _, port = hostport.partition(":")
    return is_host_name(host) and (not port or is_port(port))


def _split_userinfo(userinfo: str | None) -> tuple[str | None, str | None]:
    if userinfo is None:
        return None, None
    user, sep, password = userinfo.partition(":")
    return (percent_decode(user) or None), (percent_decode(password) if sep and password else None)


def _parse_host_port(hostport: str, scheme: Scheme, source: str) -> tuple[str, int]:
    if hostport.startswith("["):
        close = hostport.find("]")
        host = hostport[1:close] if close > 0 else ""
        after = hostport[close + 1 :] if close > 0 else ""
        if close < 0 or (after and not after.startswith(":")) or not is_ipv6(host):
            raise ConfigError(f"{source}: the host is not a valid IPv6 address in brackets")
        port_text = after[1:] if after else ""
    else:
        host, _, port_text = hostport.partition(":")
        if ":" in port_text:
            raise ConfigError(f"{source}: write an IPv6 host in brackets, e.g. [::1]:6379")
        if not host:
            raise ConfigError(f"{source}: no host: expected {scheme}://host[:port]..., {_EXAMPLE}")
        if not is_host_name(host):
            raise ConfigError(f"{source}: the host is not a valid host name or address")
    if not port_text:
        default = DEFAULT_PORTS.get(scheme)
        if default is None:
            raise ConfigError(f"{source}: a {scheme} URL needs a port, e.g. {scheme}://db:5432")
        return host, default
    if not is_port(port_text):
        raise ConfigError(f"{source}: the port is not a number (expected 1..65535)")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ConfigError(f"{source}: the port is outside 1..65535")
    return host, port


def _parse_sqlite(text: str, rest: str, source: str) -> Dependency:
    """`sqlite:///abs/path` (also `sqlite:////abs/path`) or `sqlite:relative/path`."""
    rest = rest.partition("#")[0]
    rest, _, query = rest.partition("?")
    if rest.startswith("//"):
        authority_end = rest.find("/", 2)
        authority = rest[2:] if authority_end < 0 else rest[2:authority_end]
        if authority not in ("", "localhost"):
            raise ConfigError(
                f"{source}: a sqlite URL has no host: write sqlite:///absolute/path "
                "or sqlite:relative/path"
            )
        path = "" if authority_end < 0 else "/" + rest[authority_end:].lstrip("/")
    else:
        path = rest
    path = percent_decode(path)
    if not path or path.strip("/") in ("", ":memory:"):
        raise ConfigError(
            f"{source}: a sqlite URL needs a file path, e.g. sqlite:///var/lib/app/queue.sqlite"
        )
    return Dependency(
        source=source,
        url=text,
        scheme=Scheme.SQLITE,
        host="",
        port=None,
        database=path,
        options=parse_query(query),
    )


def sqlite_dependency(path: str, source: str) -> Dependency:
    """A SQLite file as a dependency (absolute, or relative to the working directory)."""
    encoded = percent_encode(path, safe="/")
    url = f"sqlite://{encoded}" if path.startswith("/") else f"sqlite:{encoded}"
    return Dependency(
        source=source, url=url, scheme=Scheme.SQLITE, host="", port=None, database=path
    )


def _mask_query(target: str) -> str:
    """An HTTP request target, secret-looking parts masked: the values of secret query
    parameters, and whatever precedes an '@' in the path (a userinfo that lost its way)."""
    path, question, query = target.partition("?")
    if "@" in path:
        path = "/" + MASK + path[path.rindex("@") :]
    if not question:
        return path
    shown = []
    for part in query.split("&"):
        name, equals, value = part.partition("=")
        if equals and any(word in name.lower() for word in _SECRET_PARAMETERS):
            value = MASK
        shown.append(f"{name}{equals}{value}")
    return f"{path}?{'&'.join(shown)}"


_SECRET_PARAMETERS = ("pass", "pwd", "secret", "token", "key", "auth", "signature")
