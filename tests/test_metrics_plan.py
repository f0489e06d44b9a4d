"""The pure parts of metrics and queue depth, as values: listen addresses and depth specs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from entrypoint.plan.addresses import display_address, parse_listen_address
from entrypoint.plan.depth import (
    DepthSpec,
    laravel_slug,
    parse_queue_depth,
    store_problem,
)

# --- addresses -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("9464", ("", 9464)),
        (":9464", ("", 9464)),
        (" :9464 ", ("", 9464)),
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("0.0.0.0:1", ("0.0.0.0", 1)),
        ("[::1]:9464", ("::1", 9464)),
        ("[::]:65535", ("::", 65535)),
        ("[fe80::1%eth0]:9464", ("fe80::1%eth0", 9464)),
        ("localhost:9464", ("localhost", 9464)),
        ("metrics.internal:80", ("metrics.internal", 80)),
    ],
)
def test_listen_addresses(value: str, expected: tuple[str, int]) -> None:
    assert parse_listen_address(value) == expected


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("abc", "the port is not a number"),
        (":0", "the port 0 is outside 1..65535"),
        (":70000", "the port 70000 is outside 1..65535"),
        ("0", "outside 1..65535"),
        ("", "empty"),
        ("127.0.0.1:", "has no port"),
        ("::1:9464", "write an IPv6 host in brackets"),
        ("[::1]", "has no port"),
        ("[::1]9464", "has no port"),
        ("[zz]:9464", "no valid IPv6 address"),
        ("[::1:9464", "no valid IPv6 address"),
        ("bad host:9464", "no valid host name"),
        ("-x:9464", "no valid host name"),
        ("1\n:80", "no valid host name"),
        (":-1", "not a number"),
        (":123456", "not a number"),
    ],
)
def test_bad_listen_addresses_are_one_line_naming_the_variable(value: str, words: str) -> None:
    with pytest.raises(ValueError, match=r"^ENTRYPOINT_METRICS_ADDR: ") as caught:
        parse_listen_address(value)
    message = str(caught.value)
    assert words in message
    assert "\n" not in message


@given(st.text(max_size=80))
def test_any_text_is_an_address_or_one_line_value_error(value: str) -> None:
    try:
        host, port = parse_listen_address(value)
    except ValueError as exc:
        message = str(exc)
        assert "\n" not in message
    else:
        assert 1 <= port <= 65535
        assert parse_listen_address(display_address(host, port)) == (host, port)


@given(st.integers(min_value=1, max_value=65535))
def test_every_port_round_trips(port: int) -> None:
    for host in ("", "127.0.0.1", "::1"):
        assert parse_listen_address(display_address(host, port)) == (host, port)


# --- queue depth specs ---------------------------------------------------------------


def test_the_documented_forms() -> None:
    specs = parse_queue_depth(
        "laravel:default, rq:default,celery:celery,sidekiq:default,bullmq:emails",
        {"APP_NAME": "Laravel"},
    )
    assert specs == (
        DepthSpec(
            "laravel:default",
            "laravel",
            "default",
            ("laravel-database-", "laravel_database_", ""),
        ),
        DepthSpec("rq:default", "rq", "default", ("rq",)),
        DepthSpec("celery:celery", "celery", "celery", ("",)),
        DepthSpec("sidekiq:default", "sidekiq", "default", ("",)),
        DepthSpec("bullmq:emails", "bullmq", "emails", ("bull",)),
    )


def test_blank_is_off() -> None:
    assert parse_queue_depth("") == ()
    assert parse_queue_depth("  ") == ()


def test_the_label_is_the_entry_as_written() -> None:
    (spec,) = parse_queue_depth(" RQ:High.Priority ")
    assert (spec.label, spec.framework, spec.queue) == ("RQ:High.Priority", "rq", "High.Priority")


def test_options_and_environment_defaults() -> None:
    (laravel,) = parse_queue_depth("laravel:emails", {"REDIS_PREFIX": "shop:"})
    assert laravel.prefixes == ("shop:",)
    (empty,) = parse_queue_depth("laravel:emails", {"REDIS_PREFIX": ""})
    assert empty.prefixes == ("",)
    (explicit,) = parse_queue_depth("laravel:emails?prefix=x_&table=app.jobs")
    assert (explicit.prefixes, explicit.table) == (("x_",), "app.jobs")
    (table,) = parse_queue_depth("laravel:default", {"DB_QUEUE_TABLE": "queue_jobs"})
    assert table.table == "queue_jobs"
    (rq,) = parse_queue_depth("rq:default", {"RQ_KEY_PREFIX": "app"})
    assert rq.prefixes == ("app",)
    (bull,) = parse_queue_depth("bullmq:mail?prefix={b}")
    assert bull.prefixes == ("{b}",)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("rq", "no queue name"),
        ("rq:", "no queue name"),
        ("unknown:q", "unknown framework"),
        ("rq:a,,rq:b", "entry 2 is empty"),
        ("rq:a,", "entry 2 is empty"),
        (",rq:a", "entry 1 is empty"),
        ("bullmq:a:b", "cannot contain ':'"),
        ("rq:a?size=1", "unknown option"),
        ("rq:a?prefix", "unknown option"),
        ("rq:a?prefix=x&prefix=y", "given twice"),
        ("rq:a?table=jobs", "for Laravel's database driver only"),
        ("laravel:a?table=jobs;drop", "is not a table name"),
        ("laravel:a?table=a.b.c", "is not a table name"),
        ("rq:a,rq:a", "listed twice"),
        ("rq:a b", "the queue name holds"),
        ("rq:a\tb", "the queue name holds"),
    ],
)
def test_bad_specs_name_the_accepted_forms(value: str, words: str) -> None:
    with pytest.raises(ValueError, match=r"^ENTRYPOINT_QUEUE_DEPTH: ") as caught:
        parse_queue_depth(value)
    assert words in str(caught.value)
    assert "\n" not in str(caught.value)
    if words in ("no queue name", "unknown framework", "entry 2 is empty"):
        assert "laravel:default, rq:default, celery:celery" in str(caught.value)


@given(st.text(max_size=60))
def test_any_text_parses_or_is_one_line(value: str) -> None:
    try:
        specs = parse_queue_depth(value)
    except ValueError as exc:
        message = str(exc)
        assert "\n" not in message
    else:
        assert len({spec.label for spec in specs}) == len(specs)


def test_specs_are_immutable_values() -> None:
    (spec,) = parse_queue_depth("rq:default")
    with pytest.raises(AttributeError):
        spec.queue = "other"  # type: ignore[misc]
    assert spec == DepthSpec("rq:default", "rq", "default", ("rq",))
    assert len({spec, DepthSpec("rq:default", "rq", "default", ("rq",))}) == 1


@pytest.mark.parametrize(
    ("title", "separator", "slug"),
    [
        ("Laravel", "-", "laravel"),
        ("Laravel", "_", "laravel"),
        ("My Shop", "_", "my_shop"),
        ("My  Shop", "-", "my-shop"),
        ("my_shop-app", "-", "my-shop-app"),
        ("my_shop-app", "_", "my_shop_app"),
        ("Shop @ Home!", "-", "shop-at-home"),
        ("--x--", "-", "x"),
    ],
)
def test_laravel_slug(title: str, separator: str, slug: str) -> None:
    # Str::slug: flip '-'/'_' to the separator, '@' -> 'at', drop the rest, collapse, trim.
    assert laravel_slug(title, separator) == slug


def test_stores() -> None:
    specs = parse_queue_depth("laravel:default,rq:default")
    assert store_problem(specs, "redis") is None
    assert store_problem(specs, "rediss") is None
    assert "'rq:default' is read from Redis" in (store_problem(specs, "postgresql") or "")
    assert store_problem(parse_queue_depth("laravel:default"), "sqlite") is None
    assert "not supported on a https store" in (store_problem(specs, "https") or "")
    assert "not supported on a amqp store" in (store_problem(specs, "amqp") or "")
    assert store_problem((), "https") is None
