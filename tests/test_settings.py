"""Settings and modes as values: precedence, parsing, every error collected, one line each."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from entrypoint.cli.inputs import Unreadable, gather, read_config
from entrypoint.cli.render import error_line
from entrypoint.errors import ConfigError, EntrypointError, UsageError
from entrypoint.plan.modes import BUILTIN_MODES, ExecPlan, SupervisePlan, build_plan
from entrypoint.plan.settings import (
    KNOWN_VARIABLES,
    OPTIONS,
    Inputs,
    Settings,
    Source,
    load,
    normalize_mode,
    valid_modes,
)
from entrypoint.plan.urls import parse_url
from entrypoint.plan.values import MAX_SECONDS, Invalid, parse_seconds, split_command


def settle(env: dict[str, str], **inputs: Any) -> Settings:
    return load(Inputs(env=env, **inputs))


def problems_of(env: dict[str, str], **inputs: Any) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        settle(env, **inputs)
    assert caught.value.exit_code == 78
    return caught.value.problems


@pytest.mark.parametrize(
    ("raw", "mode"),
    [(None, "web"), ("", "web"), ("  ", "web"), (" Worker\n", "worker"), ("WEB", "web"),
     ("scheduler", "scheduler"), ("\tSCHEDULER ", "scheduler")],
)  # fmt: skip
def test_mode_is_trimmed_and_case_insensitive(raw: str | None, mode: str) -> None:
    env = {} if raw is None else {"MODE": raw}
    assert settle(env).mode == mode
    assert normalize_mode(raw) == mode


@pytest.mark.parametrize("raw", ["wörker", "wor ker", "workers", "web2", "-"])
def test_unknown_mode_is_a_usage_error_naming_it_and_the_valid_ones(raw: str) -> None:
    with pytest.raises(UsageError) as caught:
        settle({"MODE": raw})
    assert caught.value.exit_code == 64
    assert repr(raw) in caught.value.message
    assert "web, worker, scheduler" in caught.value.message


def test_the_mode_can_come_from_the_images_own_variable() -> None:
    env = {"ENTRYPOINT_MODE_VAR": "LYCHEE_MODE", "LYCHEE_MODE": " Worker ", "MODE": "scheduler"}
    assert settle(env).mode == "worker"
    assert settle({"ENTRYPOINT_MODE_VAR": "LYCHEE_MODE"}).mode == "web"
    with pytest.raises(UsageError, match="LYCHEE_MODE 'bogus'"):
        settle({"ENTRYPOINT_MODE_VAR": "LYCHEE_MODE", "LYCHEE_MODE": "bogus"})
    for bad in ("1MODE", "MODE-X", "", "a b"):
        assert "ENTRYPOINT_MODE_VAR" in problems_of({"ENTRYPOINT_MODE_VAR": bad})[0]


def test_flag_beats_env_beats_mode_table_beats_file_beats_default() -> None:
    file = {
        "stop_timeout": 30, "backoff_max": 40, "min_uptime": 5, "reset_after": 70,
        "modes": {"worker": {"reset_after": 80, "backoff_max": 50}},
    }  # fmt: skip
    env = {"MODE": "worker", "ENTRYPOINT_STOP_TIMEOUT": "20", "ENTRYPOINT_BACKOFF_MAX": "45"}
    got = settle(env, flags={"stop_timeout": "10"}, file=file)
    assert (got.stop_timeout, got.backoff_max, got.min_uptime, got.reset_after) == (10, 45, 5, 80)
    assert got.backoff_initial == 1
    assert got.origin("stop_timeout").label == "--stop-timeout"
    assert got.origin("backoff_max").source is Source.ENV
    assert got.origin("reset_after").source is Source.MODE_TABLE
    assert got.origin("min_uptime").source is Source.FILE
    assert got.origin("backoff_initial").source is Source.DEFAULT


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("25", 25.0), ("2.5", 2.5), ("25s", 25.0), ("500ms", 0.5), ("2m", 120.0), ("1h", 3600.0),
     (" 7 ", 7.0), (0, 0.0), (1.5, 1.5), (3, 3.0), ("999999999", 999999999.0),
     ("3000000", 3e6), ("1e300", MAX_SECONDS)],
)  # fmt: skip
def test_seconds_parse_and_huge_ones_mean_forever(text: str, seconds: float) -> None:
    parsed = parse_seconds(text)
    assert parsed == seconds
    assert isinstance(parsed, float)


@pytest.mark.parametrize("text", ["abc", "-1", "nan", "inf", "", "1e999", True, "5 min", "5\nx"])
def test_bad_seconds_are_invalid(text: object) -> None:
    with pytest.raises(Invalid):
        parse_seconds(text)


def test_huge_durations_are_accepted_the_lease_ttl_has_a_maximum() -> None:
    env = {"MODE": "worker", "ENTRYPOINT_WAIT_TIMEOUT": "999999999",
           "ENTRYPOINT_BACKOFF_INITIAL": "1e300", "ENTRYPOINT_BACKOFF_MAX": "1e300",
           "ENTRYPOINT_PROBE_TIMEOUT": "1e300"}  # fmt: skip
    got = settle(env)
    assert (got.wait_timeout, got.backoff_initial, got.probe_timeout) == (
        999999999.0, MAX_SECONDS, MAX_SECONDS,
    )  # fmt: skip
    (problem,) = problems_of({"ENTRYPOINT_LEASE_TTL": "2d"} | {"ENTRYPOINT_LEASE_TTL": "90000"})
    assert "ENTRYPOINT_LEASE_TTL=90000" in problem
    assert "at most 86400" in problem


def test_every_problem_is_reported_together_each_on_one_line() -> None:
    env = {
        "ENTRYPOINT_STOP_TIMEOUT": "5\nforged: line",
        "ENTRYPOINT_BACKOFF_MAX": "-1",
        "ENTRYPOINT_MAX_RESTARTS": "many",
        "WORKER_CMD": 'php "artisan',
        "ENTRYPOINT_LOG_LEVEL": "loud\r\nforged",
    }
    problems = problems_of(env)
    assert len(problems) == 5
    text = "; ".join(problems)
    for part in (
        "ENTRYPOINT_STOP_TIMEOUT=5\\nforged: line",
        "ENTRYPOINT_BACKOFF_MAX=-1",
        "WORKER_CMD",
        "ENTRYPOINT_MAX_RESTARTS=many",
        "ENTRYPOINT_LOG_LEVEL=loud\\r\\n",
    ):
        assert part in text
    assert "\n" not in text
    assert "\r" not in text


def test_a_secret_value_is_never_echoed_in_an_error() -> None:
    env = {"WORKER_CMD": 'worker --password=hunter2 --url redis://u:s3cret@h "open'}
    problems = problems_of(env, file={"bogus": 2})
    text = "; ".join(problems)
    assert "unknown key 'bogus'" in text
    assert "WORKER_CMD" in text
    assert "hunter2" not in text
    assert "s3cret" not in text


def test_backoff_initial_longer_than_max_is_an_error() -> None:
    env = {"ENTRYPOINT_BACKOFF_INITIAL": "10", "ENTRYPOINT_BACKOFF_MAX": "5"}
    assert "longer than" in problems_of(env)[0]


def test_commands_split_like_a_shell_without_a_shell() -> None:
    assert split_command("php artisan queue:work --tries=3 'a b' $HOME;rm") == (
        "php", "artisan", "queue:work", "--tries=3", "a b", "$HOME;rm",
    )  # fmt: skip
    assert split_command(["celery", "-A", "app", "worker"]) == ("celery", "-A", "app", "worker")
    assert split_command("   ") is None


@given(st.lists(st.text(min_size=1), min_size=1, max_size=5))
def test_any_argv_survives_a_quoted_round_trip(words: list[str]) -> None:
    words = [w.replace("\x00", "") or "x" for w in words]
    assert split_command(shlex.join(words)) == tuple(words)


@settings(max_examples=500)
@given(st.text(alphabet=st.sampled_from(list(" \t\r\nab'\"\\\x0b\xa0é")), max_size=30))
def test_the_split_without_shlex_is_shlexs_split(text: str) -> None:
    try:
        expected: object = tuple(shlex.split(text)) or None
    except ValueError:
        expected = Invalid
    try:
        got: object = split_command(text)
    except Invalid:
        got = Invalid
    assert got == expected


def test_custom_modes_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "entrypoint.toml"
    path.write_text(
        'stop_timeout = "40s"\n'
        "[modes.horizon]\n"
        'command = "php artisan horizon"\n'
        "stop_timeout = 90\n"
        "[modes.migrate]\n"
        'command = ["php", "artisan", "migrate", "--force"]\n'
        'run = "exec"\n'
    )
    inputs = gather({"MODE": "Horizon", "ENTRYPOINT_CONFIG": str(path)})
    got = load(inputs)
    assert got.mode == "horizon"
    assert valid_modes(got.modes) == ("web", "worker", "scheduler", "horizon", "migrate")
    assert got.stop_timeout == 90.0
    assert got.modes["migrate"].run == "exec"
    assert isinstance(build_plan(got), SupervisePlan)


def test_config_file_errors_name_the_file_and_the_reason(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("stop_timeout = = 3\n")
    with pytest.raises(Unreadable, match="not valid TOML"):
        read_config(str(bad))
    cases = {
        str(tmp_path / "missing.toml"): "no such file",
        str(tmp_path): "is a directory",
        "/dev/zero": "not a regular file",
        str(tmp_path / ("x" * 300)): "file name too long",
    }
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    cases[str(loop)] = "too many levels of symbolic links"
    big = tmp_path / "big.toml"
    big.write_bytes(b"#" * (2 << 20))
    cases[str(big)] = "larger than 1024 KiB"
    for path, reason in cases.items():
        problems = problems_of({}, **_inputs(path))
        assert len(problems) == 1, problems
        assert path in problems[0]
        assert reason in problems[0], problems


def _inputs(config: str) -> dict[str, Any]:
    gathered = gather({"ENTRYPOINT_CONFIG": config})
    return {"file": gathered.file, "file_path": gathered.file_path, "problems": gathered.problems}


def test_config_file_typos_and_bad_modes_are_reported_on_one_line_each() -> None:
    file = {"stop_timout": 3, "modes": {"x y": {"command": "a"}, "a\nb": {"command": "a"},
                                        "ok": {"colour": "red"}}}  # fmt: skip
    problems = problems_of({}, file=file)
    text = " | ".join(problems)
    assert "unknown key 'stop_timout'" in text
    assert "[modes.'x y']" in text
    assert "[modes.'a\\nb']" in text
    assert "colour" in text
    assert all("\n" not in p for p in problems)


def test_secrets_from_files(tmp_path: Path) -> None:
    url = tmp_path / "url"
    url.write_text("redis://:pa ss?w#rd@127.0.0.1:6379/2\n")
    got = load(gather({"MODE": "worker", "QUEUE_URL_FILE": str(url)}))
    queue = got.resolution.queue
    assert queue is not None
    assert (queue.password, queue.database) == ("pa ss?w#rd", "2")
    assert queue.source == "QUEUE_URL_FILE"
    assert "redis://:pa ss?w#rd@127.0.0.1:6379/2" in got.secrets
    password = tmp_path / "password"
    password.write_text("hunter22\n\n")
    env = {"QUEUE_CONNECTION": "redis", "REDIS_PASSWORD_FILE": str(password)}
    redis = load(gather(env)).resolution.queue
    assert redis is not None
    assert redis.password == "hunter22"


@pytest.mark.parametrize("case", ["both", "directory", "missing", "huge"])
def test_a_secret_file_that_cannot_be_used_is_78_naming_the_variable(
    tmp_path: Path, case: str
) -> None:
    target = tmp_path / "secret"
    env = {"QUEUE_URL_FILE": str(target)}
    if case == "both":
        target.write_text("redis://x")
        env["QUEUE_URL"] = "redis://y"
    elif case == "directory":
        target.mkdir()
    elif case == "huge":
        target.write_text("s3cretvalue" * 1_000_000)
    problems = problems_of({}, **_gathered(env))
    assert len(problems) == 1
    assert "QUEUE_URL_FILE" in problems[0]
    assert "s3cretvalue" not in problems[0]


def _gathered(env: dict[str, str]) -> dict[str, Any]:
    gathered = gather(env)
    return {"problems": gathered.problems, "labels": gathered.labels}


def test_unknown_variables_are_warned_with_the_closest_and_strict_refuses_them() -> None:
    env = {"MODE": "worker", "ENTRYPOINT_STOP_TIMOUT": "40"}
    got = settle(env)
    assert got.stop_timeout == 25
    (unknown,) = got.unknown
    assert (unknown.name, unknown.closest) == ("ENTRYPOINT_STOP_TIMOUT", "ENTRYPOINT_STOP_TIMEOUT")
    plan = build_plan(load(Inputs(env=env, command=("true",))))
    assert [n.event for n in plan.notices] == ["unknown_variable"]
    (problem,) = problems_of({**env, "ENTRYPOINT_STRICT": "1"})
    assert "ENTRYPOINT_STOP_TIMOUT" in problem
    assert "ENTRYPOINT_STOP_TIMEOUT" in problem


def test_every_option_and_its_secret_file_is_a_known_variable() -> None:
    for option in OPTIONS:
        if option.env.startswith("ENTRYPOINT_"):
            assert option.env in KNOWN_VARIABLES
    assert {"ENTRYPOINT_LEASE_URL_FILE", "ENTRYPOINT_WAIT_FOR_FILE"} <= KNOWN_VARIABLES


@pytest.mark.parametrize(("env", "needle"), [
    ({"ENTRYPOINT_WATCHDOG_TIMEOUT": "5"}, "needs a heartbeat source"),
    ({"ENTRYPOINT_WATCHDOG_TIMEOUT": "-1"}, "ENTRYPOINT_WATCHDOG_TIMEOUT=-1"),
    ({"ENTRYPOINT_WATCHDOG_TIMEOUT": "abc", "ENTRYPOINT_NOTIFY": "1"}, "not a number"),
    ({"ENTRYPOINT_READY_TIMEOUT": "5"}, "needs ENTRYPOINT_NOTIFY=1"),
    ({"ENTRYPOINT_NOTIFY": "maybe"}, "not a boolean"),
    ({"ENTRYPOINT_RESTART": "sometimes"}, "always, on-failure, never"),
    ({"ENTRYPOINT_LEADER_ENV": ""}, "not a variable name"),
    ({"ENTRYPOINT_LEADER_ENV": "1BAD"}, "not a variable name"),
    ({"ENTRYPOINT_LEADER_ENV": "PATH"}, "needs for something else"),
    ({"MODE": "scheduler", "ENTRYPOINT_LEADER_ENV": "ENABLE_SCHEDULER"}, "already runs one"),
])  # fmt: skip
def test_bad_liveness_lifecycle_and_leader_values(env: dict[str, str], needle: str) -> None:
    problems = problems_of({"MODE": "worker", **env})
    assert any(needle in p for p in problems), problems


def test_the_lease_store_is_checked_when_the_plan_is_built() -> None:
    secret = {"QUEUE_URL": "redis://:Zx9?Secret@127.0.0.1:1"}
    plan = build_plan(settle({"MODE": "scheduler", **secret}, command=("true",)))
    assert isinstance(plan, SupervisePlan)
    assert plan.lease is not None
    assert (plan.lease.store.password, plan.lease.store.port) == ("Zx9?Secret", 1)
    for env in ({"QUEUE_URL": "nats://127.0.0.1:4222"}, {"QUEUE_CONNECTION": "sqs"}):
        with pytest.raises(ConfigError, match="cannot hold the lease"):
            build_plan(settle({"MODE": "scheduler", **env}, command=("true",)))
        with pytest.raises(ConfigError, match="ENTRYPOINT_HANDOFF=1"):
            build_plan(settle({"MODE": "worker", "ENTRYPOINT_HANDOFF": "1", **env}, command=("x",)))


def test_a_plan_for_every_builtin_mode_as_values() -> None:
    for mode, spec in BUILTIN_MODES.items():
        env = {"MODE": mode, "QUEUE_URL": "redis://q:6379/0"}
        plan = build_plan(settle(env, command=("app", "--flag")))
        assert (plan.mode, plan.run, plan.argv, plan.command_origin) == (
            mode, spec.run, ("app", "--flag"), "CMD",
        )  # fmt: skip
        assert [d.display for d in plan.dependencies] == ["redis://q:6379/0"]
        if isinstance(plan, SupervisePlan):
            assert (plan.stop.timeout, plan.wait, plan.restart.backoff_max) == (25.0, True, 60.0)
            assert (plan.lease is not None) is spec.singleton
        else:
            assert isinstance(plan, ExecPlan)
    with pytest.raises(ConfigError, match="WORKER_CMD"):
        build_plan(settle({"MODE": "worker"}))
    explained = build_plan(settle({"MODE": "worker"}), allow_problems=True)
    assert explained.argv == ()
    assert "WORKER_CMD" in explained.problems[0]


def test_the_restart_policy_is_the_enum_the_policy_compares() -> None:
    from entrypoint.plan.policy import Restart

    for text, member in (("never", Restart.NEVER), (" On-Failure ", Restart.ON_FAILURE),
                         ("no", Restart.NEVER), ("always", Restart.ALWAYS)):  # fmt: skip
        assert settle({"ENTRYPOINT_RESTART": text}).restart is member
    assert settle({}).restart is Restart.ALWAYS


@pytest.mark.parametrize(("argv", "budget"), [
    ("php artisan queue:work --tries=3 --timeout=3600", 3600.0),
    ("php artisan queue:work --timeout 25", 25.0),
    ("bundle exec sidekiq -t 30", 30.0),
    ("sidekiq --timeout=8", None),
    ("celery -A app worker --soft-time-limit=20 --time-limit=40", 40.0),
    ("php artisan queue:work", None),
    ("rq worker", None),
])  # fmt: skip
def test_the_stop_budget(argv: str, budget: float | None) -> None:
    env = {"MODE": "worker", "ENTRYPOINT_STOP_TIMEOUT": "25"}
    plan = build_plan(settle(env, command=tuple(argv.split())))
    short = [n for n in plan.notices if n.event == "stop_budget_short"]
    assert bool(short) is (budget is not None)
    if short:
        assert dict(short[0].fields) == {"worker_timeout_s": budget, "stop_timeout_s": 25.0}
        with pytest.raises(ConfigError, match="ENTRYPOINT_STRICT=1"):
            build_plan(settle({**env, "ENTRYPOINT_STRICT": "1"}, command=tuple(argv.split())))


VARIABLES = [option.env for option in OPTIONS if option.env != "MODE"] + [
    "MODE", "QUEUE_URL", "QUEUE_CONNECTION", "REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD",
    "REDIS_URL", "DB_CONNECTION", "DB_HOST", "DB_PORT", "DB_URL", "ENTRYPOINT_TYPO",
]  # fmt: skip
VALUES = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["redis://:Zx9Sec@h:1/0", "0", "1", "-1", "1e999", "5m", "worker",
                     "tcp://:Zx9 Sec@x", "postgres://u:Zx9?Sec@/db", "x\ny", "sqs", "database",
                     "redis", "redis://Zx9Sec@h", "tcp://:Zx9Sec@x"]),
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(VARIABLES), VALUES, max_size=8))
def test_any_environment_settles_or_fails_with_one_clean_line_per_problem(
    env: dict[str, str],
) -> None:
    env = {k: v.replace("\x00", "") for k, v in env.items()}
    failure: EntrypointError | None = None
    try:
        build_plan(load(Inputs(env=env, command=("true",))), allow_problems=True)
    except EntrypointError as exc:
        failure = exc
    if failure is None:
        return
    line, code = error_line(failure, env)
    assert code in (64, 78)
    assert "\n" not in line
    assert "\r" not in line
    for value in env.values():
        try:
            secrets = parse_url(value, "X").secrets
        except ConfigError:
            continue
        for secret in secrets:
            assert secret not in line, line
