"""Which dependencies to wait for: the environment -> frozen values, nothing else.

Pure: `resolve` reads a mapping (the environment) and returns a `Resolution`,
or raises `ConfigError` listing every problem, each naming its variable:
QUEUE_URL, else Laravel's QUEUE_CONNECTION (with REDIS_* and DB_*), then the
items of ENTRYPOINT_WAIT_FOR (split once, by the settings). No message echoes
a value that holds userinfo (`user:password@`).
"""

from __future__ import annotations

from entrypoint.errors import ConfigError, quoted
from entrypoint.plan.urls import (
    _HTTP_SCHEMES,
    DEFAULT_PORTS,
    Dependency,
    Scheme,
    is_bare_host_port,
    is_host_name,
    is_ipv6,
    is_port,
    parse_url,
    percent_encode,
    sqlite_dependency,
)
from entrypoint.records import dataclass, replace

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

QUEUE_CONNECTIONS = ("redis", "database", "sqs", "beanstalkd", "sync")
LARAVEL_SQLITE_DEFAULT = "database/database.sqlite"
DB_CONNECTIONS: dict[str, Scheme] = {
    "mysql": Scheme.MYSQL,
    "mariadb": Scheme.MYSQL,
    "pgsql": Scheme.POSTGRESQL,
    "sqlite": Scheme.SQLITE,
    "sqlsrv": Scheme.SQLSERVER,
}


@dataclass(frozen=True)
class Resolution:
    queue: Dependency | None = None
    extra: tuple[Dependency, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def all(self) -> tuple[Dependency, ...]:
        return (self.queue, *self.extra) if self.queue is not None else self.extra


def resolve(
    env: Mapping[str, str],
    wait_for: tuple[str, ...] = (),
    *,
    wait_label: str = "ENTRYPOINT_WAIT_FOR",
    labels: Mapping[str, str] | None = None,
) -> Resolution:
    """QUEUE_URL, else QUEUE_CONNECTION (Laravel), plus the `wait_for` URLs, in order.

    `labels` names a variable whose value came from elsewhere (QUEUE_URL from
    QUEUE_URL_FILE). Raises ConfigError listing every problem, each naming its variable.
    """
    problems: list[str] = []
    warnings: list[str] = []
    queue: Dependency | None = None
    queue_url = _plain(env, "QUEUE_URL")
    connection = _plain(env, "QUEUE_CONNECTION")
    if queue_url is not None:
        queue = _parse_into(problems, queue_url, (labels or {}).get("QUEUE_URL", "QUEUE_URL"))
    elif connection is not None:
        queue = _laravel_queue(env, connection.lower(), problems, warnings)
    extra: list[Dependency] = []
    seen = {queue.url} if queue is not None else set()
    for dep in _wait_for(wait_for, wait_label, problems):
        if dep.url not in seen:
            seen.add(dep.url)
            extra.append(dep)
    if problems:
        raise ConfigError(problems)
    return Resolution(queue=queue, extra=tuple(extra), warnings=tuple(warnings))


# -- helpers over the environment ------------------------------------------------


def _plain(env: Mapping[str, str], name: str) -> str | None:
    """The stripped value of `name`, None when unset or blank."""
    value = env.get(name, "").strip()
    return value or None


def _laravel(env: Mapping[str, str], name: str) -> str | None:
    """A value as Laravel's env() reads it: `null`/`(null)` are unset, `empty` is ''."""
    value = env.get(name)
    if value is None:
        return None
    value = value.strip()
    lowered = value.lower()
    if lowered in ("null", "(null)") or not value:
        return None
    if lowered in ("empty", "(empty)"):
        return ""
    return value


def _parse_into(problems: list[str], value: str, source: str) -> Dependency | None:
    """parse_url, with its problem appended to `problems` instead of raised."""
    try:
        return parse_url(value, source)
    except ConfigError as exc:
        problems.extend(exc.problems)
        return None


def _port_of(env: Mapping[str, str], name: str, default: int, problems: list[str]) -> int:
    value = _laravel(env, name)
    if value is None or value == "":
        return default
    if not is_port(value) or not 1 <= int(value) <= 65535:
        problems.append(f"{name}: {_echo(value)} is not a port number (1..65535)")
        return default
    return int(value)


def _host_of(env: Mapping[str, str], name: str, default: str, problems: list[str]) -> str:
    value = _laravel(env, name) or default
    if is_host_name(value):  # first: an IPv6 check loads _socket
        return value
    bare = value[1:-1] if value.startswith("[") and value.endswith("]") else value
    if is_ipv6(bare):
        return bare
    problems.append(f"{name}: {_echo(value)} is not a valid host name or address")
    return value


def _echo(value: str) -> str:
    """A value quoted for a message, unless it holds userinfo (a password may precede '@')."""
    if "@" in value:
        return "the value (it holds '@': put the user and password in their own variables)"
    return quoted(value)


def _build(
    source: str,
    scheme: Scheme,
    *,
    host: str,
    port: int,
    username: str | None = None,
    password: str | None = None,
    database: str | None = None,
) -> Dependency:
    """A Dependency from separate settings, with its full URL composed (encoded)."""
    userinfo = ""
    if username is not None or password is not None:
        userinfo = percent_encode(username or "")
        userinfo += f":{percent_encode(password)}" if password is not None else ""
        userinfo += "@"
    shown_host = f"[{host}]" if ":" in host else host
    tail = f"/{percent_encode(database)}" if database is not None else ""
    return Dependency(
        source=source,
        url=f"{scheme}://{userinfo}{shown_host}:{port}{tail}",
        scheme=scheme,
        host=host,
        port=port,
        username=username,
        password=password,
        database=database,
    )


def _merge_url(
    dep: Dependency, username: str | None, password: str | None, database: str | None
) -> Dependency:
    """Laravel merges a connection's URL over its other settings: the URL's parts win."""
    return replace(
        dep,
        source="QUEUE_CONNECTION",
        username=dep.username if dep.username is not None else username,
        password=dep.password if dep.password is not None else password,
        database=dep.database if dep.database is not None else database,
    )


# -- Laravel's QUEUE_CONNECTION --------------------------------------------------


def _laravel_queue(
    env: Mapping[str, str], connection: str, problems: list[str], warnings: list[str]
) -> Dependency | None:
    if connection == "sync":
        warnings.append(
            "QUEUE_CONNECTION=sync: jobs run inside the web request, nothing is queued, "
            "nothing to check"
        )
        return None
    if connection == "redis":
        return _laravel_redis(env, problems)
    if connection == "database":
        return _laravel_database(env, problems)
    if connection == "sqs":
        return _laravel_sqs(env, problems)
    if connection == "beanstalkd":
        host = _host_of(env, "BEANSTALKD_QUEUE_HOST", "localhost", problems)
        return _build("QUEUE_CONNECTION", Scheme.BEANSTALKD, host=host, port=11300)
    shown = _echo(connection) if len(connection) <= 40 else "value"
    problems.append(
        f"QUEUE_CONNECTION: unknown connection {shown}: expected one of "
        f"{', '.join(QUEUE_CONNECTIONS)} (or set QUEUE_URL)"
    )
    return None


def _laravel_redis(env: Mapping[str, str], problems: list[str]) -> Dependency | None:
    username = _laravel(env, "REDIS_USERNAME") or None
    password = _laravel(env, "REDIS_PASSWORD") or None
    database = _laravel(env, "REDIS_DB") or None
    if database is not None and not (database.isascii() and database.isdigit()):
        problems.append(f"REDIS_DB: {_echo(database)} is not a database number")
        database = None
    url = _laravel(env, "REDIS_URL")
    if url:
        dep = _parse_into(problems, url, "REDIS_URL")
        if dep is None:
            return None
        if dep.scheme not in (Scheme.REDIS, Scheme.REDISS):
            problems.append("REDIS_URL: expected a redis:// or rediss:// URL")
            return None
        return _merge_url(dep, username, password, database)
    scheme_name = (_laravel(env, "REDIS_SCHEME") or "tcp").lower()
    host_value = _laravel(env, "REDIS_HOST") or "127.0.0.1"
    for prefix, named in (("tls://", "tls"), ("tcp://", "tcp")):
        if host_value.lower().startswith(prefix):
            host_value, scheme_name = host_value[len(prefix) :], named
    if scheme_name not in ("tcp", "tls"):
        problems.append(f"REDIS_SCHEME: {_echo(scheme_name)} is not supported (tcp or tls)")
    scheme = Scheme.REDISS if scheme_name == "tls" else Scheme.REDIS
    host = _host_of({"REDIS_HOST": host_value}, "REDIS_HOST", "127.0.0.1", problems)
    port = _port_of(env, "REDIS_PORT", 6379, problems)
    return _build(
        "QUEUE_CONNECTION",
        scheme,
        host=host,
        port=port,
        username=username,
        password=password,
        database=database,
    )


def _laravel_database(env: Mapping[str, str], problems: list[str]) -> Dependency | None:
    name_var = "DB_QUEUE_CONNECTION" if _laravel(env, "DB_QUEUE_CONNECTION") else "DB_CONNECTION"
    connection = (_laravel(env, name_var) or "sqlite").lower()
    username = _laravel(env, "DB_USERNAME")
    password = _laravel(env, "DB_PASSWORD") or None
    database = _laravel(env, "DB_DATABASE")
    for url_var in ("DB_URL", "DATABASE_URL"):
        url = _laravel(env, url_var)
        if url:
            dep = _parse_into(problems, url, url_var)
            if dep is None:
                return None
            if dep.scheme not in (*DB_CONNECTIONS.values(),):
                problems.append(f"{url_var}: expected a mysql, pgsql, sqlite or sqlsrv URL")
                return None
            if dep.scheme is Scheme.SQLITE:
                return replace(dep, source="QUEUE_CONNECTION")
            return _merge_url(dep, username, password, database)
    scheme = DB_CONNECTIONS.get(connection)
    if scheme is None:
        problems.append(
            f"{name_var}: unknown connection {_echo(connection)}: expected one of "
            f"{', '.join(DB_CONNECTIONS)}"
        )
        return None
    if scheme is Scheme.SQLITE:
        path = database or LARAVEL_SQLITE_DEFAULT
        if path == ":memory:":
            problems.append("DB_DATABASE: an in-memory SQLite database cannot hold a shared queue")
            return None
        return sqlite_dependency(path, "QUEUE_CONNECTION")
    default_host = "localhost" if scheme is Scheme.SQLSERVER else "127.0.0.1"
    host = _host_of(env, "DB_HOST", default_host, problems)
    port = _port_of(env, "DB_PORT", DEFAULT_PORTS[scheme], problems)
    return _build(
        "QUEUE_CONNECTION",
        scheme,
        host=host,
        port=port,
        username=username if username is not None else "root",
        password=password,
        database=database if database is not None else "laravel",
    )


def _laravel_sqs(env: Mapping[str, str], problems: list[str]) -> Dependency | None:
    """The SQS endpoint: SQS_PREFIX's host, an AWS endpoint variable, or the region's."""
    for name in ("SQS_PREFIX", "AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL"):
        value = _laravel(env, name)
        if value:
            dep = _parse_into(problems, value, name)
            if dep is None:
                return None
            if dep.scheme not in _HTTP_SCHEMES:
                problems.append(f"{name}: expected an http:// or https:// URL")
                return None
            assert dep.port is not None  # every HTTP URL gets a port
            return _build("QUEUE_CONNECTION", dep.scheme, host=dep.host, port=dep.port)
    region = (_laravel(env, "AWS_DEFAULT_REGION") or "us-east-1").lower()
    if not _is_region(region):
        problems.append(f"AWS_DEFAULT_REGION: {_echo(region)} is not an AWS region name")
        return None
    host = f"sqs.{region}.amazonaws.com"
    return _build("QUEUE_CONNECTION", Scheme.HTTPS, host=host, port=443)


def _is_region(region: str) -> bool:
    """`[a-z]{2}(-[a-z]+)+-[0-9]+`, as AWS names its regions (eu-central-1, us-gov-west-1)."""
    parts = region.split("-")
    letters = [part.isascii() and part.isalpha() and part.islower() for part in parts[:-1]]
    return (
        len(parts) >= 3
        and len(parts[0]) == 2
        and all(letters)
        and parts[-1].isascii()
        and parts[-1].isdigit()
    )


# -- ENTRYPOINT_WAIT_FOR ---------------------------------------------------------


def _wait_for(items: tuple[str, ...], label: str, problems: list[str]) -> list[Dependency]:
    """URLs; a bare `host:port` is a TCP check."""
    found: list[Dependency] = []
    for number, item in enumerate(items, start=1):
        source = f"{label} (item {number})" if len(items) > 1 else label
        text = f"tcp://{item}" if is_bare_host_port(item) else item
        dep = _parse_into(problems, text, source)
        if dep is not None:
            found.append(replace(dep, source=label))
    return found
