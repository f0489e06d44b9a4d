"""Resolution of the dependencies, as values: environment in, Resolution or ConfigError out."""

from __future__ import annotations

import inspect
from urllib.parse import quote

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from entrypoint.errors import ConfigError, ExitCode
from entrypoint.plan import deps, urls
from entrypoint.plan.deps import Resolution
from entrypoint.plan.deps import resolve as resolve_items
from entrypoint.plan.urls import Dependency, Depth, Scheme, parse_url
from entrypoint.plan.values import parse_url_list


def resolve(env: dict[str, str]) -> Resolution:
    """The resolution of `env`, its ENTRYPOINT_WAIT_FOR split as the settings split it."""
    return resolve_items(env, parse_url_list(env.get("ENTRYPOINT_WAIT_FOR", "")))


def problems_of(env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        resolve(env)
    assert caught.value.exit_code == ExitCode.CONFIG
    return caught.value.problems


def only(env: dict[str, str]) -> Dependency:
    resolution = resolve(env)
    assert resolution.queue is not None
    return resolution.queue


# -- parse_url -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "scheme", "host", "port", "database"),
    [
        ("redis://127.0.0.1:6379/0", Scheme.REDIS, "127.0.0.1", 6379, "0"),
        ("redis://cache", Scheme.REDIS, "cache", 6379, None),
        ("rediss://cache:6380/2", Scheme.REDISS, "cache", 6380, "2"),
        ("postgres://db/app", Scheme.POSTGRESQL, "db", 5432, "app"),
        ("postgresql://db:6543", Scheme.POSTGRESQL, "db", 6543, None),
        ("pgsql://db/my%20app", Scheme.POSTGRESQL, "db", 5432, "my app"),
        ("mysql://db/shop", Scheme.MYSQL, "db", 3306, "shop"),
        ("mariadb://db", Scheme.MYSQL, "db", 3306, None),
        ("amqp://rabbit", Scheme.AMQP, "rabbit", 5672, "/"),
        ("amqp://rabbit/", Scheme.AMQP, "rabbit", 5672, "/"),
        ("amqp://rabbit/%2F", Scheme.AMQP, "rabbit", 5672, "/"),
        ("amqps://rabbit/jobs", Scheme.AMQPS, "rabbit", 5671, "jobs"),
        ("nats://nats", Scheme.NATS, "nats", 4222, None),
        ("tcp://db:5432", Scheme.TCP, "db", 5432, None),
        ("http://web/healthz", Scheme.HTTP, "web", 80, None),
        ("https://web", Scheme.HTTPS, "web", 443, None),
        ("beanstalkd://queue", Scheme.BEANSTALKD, "queue", 11300, None),
        ("sqlsrv://mssql/app", Scheme.SQLSERVER, "mssql", 1433, "app"),
        ("REDIS://Cache_1:7000", Scheme.REDIS, "Cache_1", 7000, None),
        ("redis://[::1]:6380/1", Scheme.REDIS, "::1", 6380, "1"),
        ("  redis://cache  ", Scheme.REDIS, "cache", 6379, None),
    ],
)
def test_parse_url_values(
    url: str, scheme: Scheme, host: str, port: int, database: str | None
) -> None:
    dep = parse_url(url, "QUEUE_URL")
    assert (dep.scheme, dep.host, dep.port, dep.database) == (scheme, host, port, database)
    assert dep.source == "QUEUE_URL"


def test_userinfo_is_decoded_and_masked() -> None:
    dep = parse_url("redis://worker:p%40ss%3Aw0rd@cache:6379/3", "QUEUE_URL")
    assert dep.username == "worker"
    assert dep.password == "p@ss:w0rd"
    assert dep.display == "redis://worker:***@cache:6379/3"
    assert "p@ss" not in repr(dep)
    assert dep.depth is Depth.AUTHENTICATED


@pytest.mark.parametrize(
    ("url", "password", "host", "database"),
    [
        ("redis://:pa/ss@cache:6379/1", "pa/ss", "cache", "1"),
        ("redis://:p@ss#word?x@cache/2", "p@ss#word?x", "cache", "2"),
        ("postgresql://app:12/34@db/app", "12/34", "db", "app"),
        ("amqp://u:a:b@c@rabbit/v", "a:b@c", "rabbit", "v"),
    ],
)
def test_unencoded_password_runs_to_the_last_at(
    url: str, password: str, host: str, database: str
) -> None:
    dep = parse_url(url, "QUEUE_URL")
    assert (dep.password, dep.host, dep.database) == (password, host, database)
    assert password not in dep.display


def test_http_path_may_hold_an_at() -> None:
    dep = parse_url("http://web:8080/users/@me?x=1", "ENTRYPOINT_HEALTH_URL")
    assert (dep.host, dep.port, dep.username, dep.path) == ("web", 8080, None, "/users/@me?x=1")


def test_token_userinfo_is_masked_for_nats_and_http() -> None:
    assert parse_url("nats://s3cr3t-token@nats", "X").display == "nats://***@nats:4222"
    assert parse_url("https://tok3n@api/health", "X").display == "https://***@api:443/health"
    # A lone userinfo may be a password written without its colon: masked on every scheme.
    assert parse_url("mysql://root@db/app", "X").display == "mysql://***@db:3306/app"
    assert parse_url("redis://Zx9Secret@host", "X").display == "redis://***@host:6379"


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///var/lib/app/queue.sqlite", "/var/lib/app/queue.sqlite"),
        ("sqlite:////var/lib/app/queue.sqlite", "/var/lib/app/queue.sqlite"),
        ("sqlite://localhost/tmp/q.db", "/tmp/q.db"),
        ("sqlite:database/database.sqlite", "database/database.sqlite"),
        ("sqlite:///tmp/my%20queue.db?mode=rwc", "/tmp/my queue.db"),
        ("sqlite3:///q.db", "/q.db"),
    ],
)
def test_sqlite_paths(url: str, path: str) -> None:
    dep = parse_url(url, "QUEUE_URL")
    assert (dep.scheme, dep.database, dep.port) == (Scheme.SQLITE, path, None)
    assert dep.depth is Depth.FILE
    assert parse_url(dep.display, "X").database == path


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("kafka://broker:9092", ["unknown scheme 'kafka'", "redis"]),
        ("just some words", ["not a URL"]),
        ("redis:cache", ["expected redis://host"]),
        ("redis://", ["no host"]),
        ("redis://:6379", ["no host"]),
        ("redis://cache:0", ["outside 1..65535"]),
        ("redis://cache:65536", ["outside 1..65535"]),
        ("redis://cache:99999999", ["not a number"]),
        ("redis://cache:http", ["not a number"]),
        ("redis://cache:-1", ["not a number"]),
        ("redis://cache/zero", ["Redis database", "number"]),
        ("redis://ca che:6379", ["not a valid host"]),
        ("redis://::1:6379", ["IPv6", "brackets"]),
        ("redis://[nope]:6379", ["IPv6"]),
        ("tcp://db", ["needs a port"]),
        ("sqlite://", ["file path"]),
        ("sqlite::memory:", ["file path"]),
        ("sqlite://db-host/q.db", ["no host"]),
    ],
)
def test_malformed_urls_name_the_variable(url: str, words: list[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_url(url, "QUEUE_URL")
    message = str(caught.value)
    assert message.startswith("QUEUE_URL: ")
    for word in words:
        assert word in message


def test_a_misparsed_password_is_never_quoted() -> None:
    # No '@': the "password" lands where the port goes; the message must not show it.
    with pytest.raises(ConfigError) as caught:
        parse_url("redis://cache:Sup3rS3cret", "QUEUE_URL")
    assert "Sup3rS3cret" not in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        parse_url("redis://cache:123456789", "QUEUE_URL")
    assert "123456789" not in str(caught.value)


def test_depth_per_scheme(monkeypatch: pytest.MonkeyPatch) -> None:
    def depth(url: str) -> Depth:
        return parse_url(url, "X").depth

    assert depth("redis://cache") is Depth.HANDSHAKE
    assert depth("redis://:pw@cache") is Depth.AUTHENTICATED
    assert depth("redis://user@cache") is Depth.HANDSHAKE  # no password: no AUTH
    assert depth("postgresql://app@db/app") is Depth.HANDSHAKE
    assert depth("postgresql://app:pw@db/app") is Depth.AUTHENTICATED
    assert depth("mysql://db") is Depth.HANDSHAKE
    assert depth("mysql://root@db/app") is Depth.AUTHENTICATED
    assert depth("amqp://rabbit") is Depth.HANDSHAKE
    assert depth("amqp://guest:guest@rabbit") is Depth.AUTHENTICATED
    assert depth("nats://nats") is Depth.HANDSHAKE
    assert depth("nats://token@nats") is Depth.AUTHENTICATED
    assert depth("tcp://db:1") is Depth.CONNECT
    assert depth("https://web") is Depth.HTTP
    assert depth("sqlsrv://db") is Depth.HANDSHAKE
    monkeypatch.setattr(urls, "driver_available", lambda _name: False)
    assert depth("postgresql://app:pw@db/app") is Depth.HANDSHAKE
    assert depth("mysql://root:pw@db/app") is Depth.HANDSHAKE


def test_repr_shows_no_secret() -> None:
    dep = parse_url("amqp://worker:Very-S3cret@rabbit/jobs", "QUEUE_URL")
    assert "Very-S3cret" not in repr(dep)
    assert "Very-S3cret" not in str(dep)
    assert "Very-S3cret" not in repr(Resolution(queue=dep))


# -- resolve: QUEUE_URL, ENTRYPOINT_WAIT_FOR ----------------------------------------------


def test_nothing_configured_means_nothing_to_wait_for() -> None:
    assert resolve({}) == Resolution(queue=None)
    assert resolve({"QUEUE_URL": "  ", "QUEUE_CONNECTION": ""}).all == ()


def test_queue_url_wins_over_queue_connection() -> None:
    dep = only({"QUEUE_URL": "redis://cache/1", "QUEUE_CONNECTION": "nonsense"})
    assert (dep.source, dep.host, dep.database) == ("QUEUE_URL", "cache", "1")


def test_wait_for_list_in_order_with_bare_host_port() -> None:
    resolution = resolve(
        {
            "QUEUE_URL": "redis://cache",
            "ENTRYPOINT_WAIT_FOR": " postgres://db/app , ,http://web/health,search:9200,redis://cache",
        }
    )
    assert [d.display for d in resolution.extra] == [
        "postgresql://db:5432/app",
        "http://web:80/health",
        "tcp://search:9200",
    ]
    assert {d.source for d in resolution.extra} == {"ENTRYPOINT_WAIT_FOR"}
    assert [d.scheme for d in resolution.all] == ["redis", "postgresql", "http", "tcp"]


def test_every_problem_is_listed() -> None:
    problems = problems_of(
        {
            "QUEUE_URL": "redis://cache:0",
            "ENTRYPOINT_WAIT_FOR": "postgres://db/app,nope://x,tcp://db",
        }
    )
    assert problems == [
        "QUEUE_URL: the port is outside 1..65535",
        "ENTRYPOINT_WAIT_FOR (item 2): unknown scheme 'nope': expected one of "
        + ", ".join(s.value for s in Scheme),
        "ENTRYPOINT_WAIT_FOR (item 3): a tcp URL needs a port, e.g. tcp://db:5432",
    ]


# -- resolve: Laravel's QUEUE_CONNECTION ---------------------------------------------------


def test_laravel_redis_defaults() -> None:
    dep = only({"QUEUE_CONNECTION": "redis"})
    assert dep.display == "redis://127.0.0.1:6379"
    assert (dep.source, dep.password, dep.database) == ("QUEUE_CONNECTION", None, None)


def test_laravel_redis_settings_are_encoded() -> None:
    dep = only(
        {
            "QUEUE_CONNECTION": "Redis",
            "REDIS_HOST": "cache",
            "REDIS_PORT": "6380",
            "REDIS_USERNAME": "worker",
            "REDIS_PASSWORD": "p@ss/w:rd",
            "REDIS_DB": "4",
        }
    )
    assert (dep.host, dep.port, dep.username, dep.password, dep.database) == (
        "cache",
        6380,
        "worker",
        "p@ss/w:rd",
        "4",
    )
    assert dep.display == "redis://worker:***@cache:6380/4"
    assert parse_url(dep.url, "X").password == "p@ss/w:rd"


def test_laravel_null_is_unset() -> None:
    dep = only({"QUEUE_CONNECTION": "redis", "REDIS_PASSWORD": "null", "REDIS_HOST": "(null)"})
    assert (dep.host, dep.password) == ("127.0.0.1", None)


@pytest.mark.parametrize(
    "env",
    [
        {"REDIS_SCHEME": "tls", "REDIS_HOST": "cache"},
        {"REDIS_HOST": "tls://cache"},
    ],
)
def test_laravel_redis_tls(env: dict[str, str]) -> None:
    dep = only({"QUEUE_CONNECTION": "redis", **env})
    assert (dep.scheme, dep.host) == (Scheme.REDISS, "cache")


def test_laravel_redis_url_merges_with_settings() -> None:
    dep = only(
        {
            "QUEUE_CONNECTION": "redis",
            "REDIS_URL": "rediss://cache:7000",
            "REDIS_PASSWORD": "from-env",
            "REDIS_DB": "2",
        }
    )
    assert (dep.scheme, dep.port, dep.password, dep.database) == (
        Scheme.REDISS,
        7000,
        "from-env",
        "2",
    )


def test_laravel_database_connections() -> None:
    pgsql = only(
        {
            "QUEUE_CONNECTION": "database",
            "DB_CONNECTION": "pgsql",
            "DB_HOST": "db",
            "DB_DATABASE": "app",
            "DB_USERNAME": "app",
            "DB_PASSWORD": "pw",
        }
    )
    assert pgsql.display == "postgresql://app:***@db:5432/app"
    mariadb = only({"QUEUE_CONNECTION": "database", "DB_CONNECTION": "mariadb", "DB_PORT": "3307"})
    assert mariadb.display == "mysql://***@127.0.0.1:3307/laravel"  # Laravel's defaults
    assert (mariadb.username, mariadb.database) == ("root", "laravel")
    sqlsrv = only({"QUEUE_CONNECTION": "database", "DB_CONNECTION": "sqlsrv"})
    assert sqlsrv.display == "sqlserver://***@localhost:1433/laravel"
    queue_connection = only(
        {"QUEUE_CONNECTION": "database", "DB_CONNECTION": "sqlite", "DB_QUEUE_CONNECTION": "pgsql"}
    )
    assert queue_connection.scheme is Scheme.POSTGRESQL


def test_laravel_sqlite() -> None:
    default = only({"QUEUE_CONNECTION": "database"})  # Laravel 11: DB_CONNECTION=sqlite
    assert (default.scheme, default.database) == (Scheme.SQLITE, "database/database.sqlite")
    assert default.display == "sqlite:database/database.sqlite"
    absolute = only(
        {"QUEUE_CONNECTION": "database", "DB_CONNECTION": "sqlite", "DB_DATABASE": "/data/q.db"}
    )
    assert (absolute.database, absolute.display) == ("/data/q.db", "sqlite:///data/q.db")
    assert parse_url(absolute.url, "X").database == "/data/q.db"


def test_laravel_db_url() -> None:
    dep = only(
        {
            "QUEUE_CONNECTION": "database",
            "DB_CONNECTION": "mysql",
            "DB_URL": "postgres://app@db:6543/jobs",
            "DB_PASSWORD": "pw",
        }
    )
    assert (dep.scheme, dep.port, dep.database, dep.password) == (
        Scheme.POSTGRESQL,
        6543,
        "jobs",
        "pw",
    )


def test_laravel_sqs_and_beanstalkd() -> None:
    assert only({"QUEUE_CONNECTION": "sqs"}).display == "https://sqs.us-east-1.amazonaws.com:443/"
    region = only({"QUEUE_CONNECTION": "sqs", "AWS_DEFAULT_REGION": "eu-west-3"})
    assert region.host == "sqs.eu-west-3.amazonaws.com"
    prefix = only({"QUEUE_CONNECTION": "sqs", "SQS_PREFIX": "http://localstack:4566/000000000000"})
    assert prefix.display == "http://localstack:4566/"
    assert prefix.depth is Depth.HTTP
    bean = only({"QUEUE_CONNECTION": "beanstalkd", "BEANSTALKD_QUEUE_HOST": "bean"})
    assert (bean.display, bean.depth) == ("beanstalkd://bean:11300", Depth.HANDSHAKE)


def test_sync_warns_and_checks_nothing() -> None:
    resolution = resolve({"QUEUE_CONNECTION": "sync", "ENTRYPOINT_WAIT_FOR": "db:5432"})
    assert resolution.queue is None
    assert len(resolution.extra) == 1
    assert len(resolution.warnings) == 1
    assert "QUEUE_CONNECTION=sync" in resolution.warnings[0]
    assert "nothing to check" in resolution.warnings[0]


def test_laravel_problems_name_their_variables() -> None:
    assert problems_of({"QUEUE_CONNECTION": "kafka"}) == [
        (
            "QUEUE_CONNECTION: unknown connection 'kafka': expected one of "
            "redis, database, sqs, beanstalkd, sync (or set QUEUE_URL)"
        )
    ]
    problems = problems_of(
        {"QUEUE_CONNECTION": "redis", "REDIS_PORT": "six", "REDIS_DB": "x", "REDIS_HOST": "a b"}
    )
    assert [p.split(":")[0] for p in problems] == ["REDIS_DB", "REDIS_HOST", "REDIS_PORT"]
    assert problems_of({"QUEUE_CONNECTION": "database", "DB_CONNECTION": "oracle"})[0].startswith(
        "DB_CONNECTION: unknown connection 'oracle'"
    )
    assert problems_of({"QUEUE_CONNECTION": "redis", "REDIS_URL": "mysql://db"}) == [
        "REDIS_URL: expected a redis:// or rediss:// URL"
    ]
    assert problems_of({"QUEUE_CONNECTION": "database", "DB_URL": "redis://x:0"}) == [
        "DB_URL: the port is outside 1..65535"
    ]


def test_secret_variables_never_appear_in_problems() -> None:
    problems = problems_of(
        {
            "QUEUE_CONNECTION": "redis",
            "REDIS_URL": "redis://:Hunter2-secret@cache:0",
            "REDIS_PASSWORD": "Hunter2-secret",
        }
    )
    assert "Hunter2" not in "".join(problems)


# -- properties -------------------------------------------------------------------------

# Every fixed text these modules can print: a password that is a piece of it would
# "appear" in a message without leaking, so such passwords are skipped.
VOCABULARY = inspect.getsource(deps)
SCHEMES = ["redis", "rediss", "postgresql", "mysql", "amqp", "amqps", "nats", "http", "https"]
# utf-8 excludes surrogates; user names without control characters.
users = st.text(st.characters(codec="utf-8", exclude_categories=["Cc"]), max_size=12)
passwords = st.text(st.characters(codec="utf-8"), min_size=6, max_size=30)


@settings(max_examples=300, deadline=None)
@given(scheme=st.sampled_from(SCHEMES), user=users, password=passwords)
def test_encoded_userinfo_round_trips_and_never_shows(
    scheme: str, user: str, password: str
) -> None:
    assume(password not in VOCABULARY and password not in user)
    url = f"{scheme}://{quote(user, safe='')}:{quote(password, safe='')}@host.example:1234/1"
    dep = parse_url(url, "QUEUE_URL")
    assert dep.password == password
    assert dep.username == (user or None)
    for text in (dep.display, repr(dep), str(Resolution(queue=dep))):
        assert password not in text
        assert quote(password, safe="") not in text


@settings(max_examples=400, deadline=None)
@given(
    scheme=st.sampled_from([*SCHEMES, "tcp"]),
    user=users,
    password=passwords,
    tail=st.sampled_from(["", "/", "/0", "/db?x=1", ":6379/1", ":99999", ":port"]),
)
def test_raw_userinfo_never_shows_in_display_or_errors(
    scheme: str, user: str, password: str, tail: str
) -> None:
    url = f"{scheme}://{user}:{password}@host.example{tail}"
    assume(password.strip() not in VOCABULARY and password not in user)
    assume(password.strip() and password.strip() not in url.replace(password, ""))
    secret = password.strip()
    try:
        dep = parse_url(url, "QUEUE_URL")
    except ConfigError as exc:
        shown = str(exc)
    else:
        shown = dep.display + repr(dep)
    assert secret not in shown


@settings(max_examples=300, deadline=None)
@given(password=passwords, port=st.sampled_from(["", "abc", "0", "70000"]))
def test_laravel_password_never_in_problems(password: str, port: str) -> None:
    assume(password not in VOCABULARY)
    env = {"QUEUE_CONNECTION": "redis", "REDIS_PASSWORD": password, "REDIS_PORT": port}
    try:
        shown = only(env).display
    except ConfigError as exc:
        shown = str(exc)
    assert password.strip() not in shown


def test_to_json_for_explain() -> None:
    dep = parse_url("nats://S3cret-token@nats:4222", "ENTRYPOINT_WAIT_FOR")
    assert dep.to_json() == {
        "source": "ENTRYPOINT_WAIT_FOR",
        "dependency": "nats://***@nats:4222",
        "scheme": "nats",
        "host": "nats",
        "port": 4222,
        "database": None,
        "depth": "authenticated",
        "credentials": True,
    }
    assert "S3cret" not in str(dep.to_json())
