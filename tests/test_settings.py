"""Settings and modes as values: precedence, parsing, every error collected."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from entrypoint.errors import ConfigError, UsageError
from entrypoint.plan.settings import (
    Invalid,
    load,
    normalize_mode,
    parse_command,
    parse_seconds,
    read_config_file,
    valid_modes,
)


@pytest.mark.parametrize(
    ("raw", "mode"),
    [(None, "web"), ("", "web"), ("  ", "web"), (" Worker\n", "worker"), ("WEB", "web"),
     ("scheduler", "scheduler"), ("\tSCHEDULER ", "scheduler")],
)  # fmt: skip
def test_mode_is_trimmed_and_case_insensitive(raw: str | None, mode: str) -> None:
    env = {} if raw is None else {"MODE": raw}
    assert load(flags={}, env=env).mode == mode
    assert normalize_mode(raw) == mode


@pytest.mark.parametrize("raw", ["wörker", "wor ker", "workers", "web2", "-"])
def test_unknown_mode_is_a_usage_error_naming_it_and_the_valid_ones(raw: str) -> None:
    with pytest.raises(UsageError) as caught:
        load(flags={}, env={"MODE": raw})
    assert caught.value.exit_code == 64
    assert repr(raw) in caught.value.message
    assert "web, worker, scheduler" in caught.value.message


def test_flag_beats_env_beats_file_beats_default() -> None:
    file = {"stop_timeout": 30, "backoff_max": 40, "min_uptime": 5}
    env = {"ENTRYPOINT_STOP_TIMEOUT": "20", "ENTRYPOINT_BACKOFF_MAX": "45"}
    settings = load(flags={"stop_timeout": "10"}, env=env, file=file)
    assert settings.stop_timeout == 10
    assert settings.backoff_max == 45
    assert settings.min_uptime == 5
    assert settings.reset_after == 60
    assert settings.sources["stop_timeout"] == "--stop-timeout"
    assert settings.sources["backoff_max"] == "ENTRYPOINT_BACKOFF_MAX"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("25", 25.0), ("2.5", 2.5), ("25s", 25.0), ("500ms", 0.5), ("2m", 120.0), ("1h", 3600.0),
     (" 7 ", 7.0), (0, 0.0), (1.5, 1.5)],
)  # fmt: skip
def test_seconds_parse(text: str, seconds: float) -> None:
    assert parse_seconds(text) == seconds


@pytest.mark.parametrize("text", ["abc", "-1", "nan", "inf", "", "1e999", True, "5 min"])
def test_bad_seconds_are_invalid(text: object) -> None:
    with pytest.raises(Invalid):
        parse_seconds(text)


def test_every_problem_is_reported_together() -> None:
    env = {
        "ENTRYPOINT_STOP_TIMEOUT": "abc",
        "ENTRYPOINT_BACKOFF_MAX": "-1",
        "ENTRYPOINT_MAX_RESTARTS": "many",
        "WORKER_CMD": 'php "artisan',
        "ENTRYPOINT_LOG_LEVEL": "loud",
    }
    with pytest.raises(ConfigError) as caught:
        load(flags={}, env=env)
    assert caught.value.exit_code == 78
    assert len(caught.value.problems) == 5
    text = caught.value.message
    for part in ("ENTRYPOINT_STOP_TIMEOUT=abc", "ENTRYPOINT_BACKOFF_MAX=-1", "WORKER_CMD",
                 "ENTRYPOINT_MAX_RESTARTS=many", "ENTRYPOINT_LOG_LEVEL=loud"):  # fmt: skip
        assert part in text


def test_a_secret_value_is_never_echoed_in_an_error() -> None:
    env = {"WORKER_CMD": 'worker --password=hunter2 --url redis://u:s3cret@h "open'}
    with pytest.raises(ConfigError) as caught:
        load(flags={}, env=env, file={"bogus": 2})
    assert "unknown key 'bogus'" in caught.value.message
    assert "WORKER_CMD" in caught.value.message
    assert "hunter2" not in caught.value.message
    assert "s3cret" not in caught.value.message


def test_backoff_initial_longer_than_max_is_an_error() -> None:
    env = {"ENTRYPOINT_BACKOFF_INITIAL": "10", "ENTRYPOINT_BACKOFF_MAX": "5"}
    with pytest.raises(ConfigError, match="longer than"):
        load(flags={}, env=env)


def test_commands_split_like_a_shell_without_a_shell() -> None:
    assert parse_command("php artisan queue:work --tries=3 'a b' $HOME;rm") == (
        "php", "artisan", "queue:work", "--tries=3", "a b", "$HOME;rm",
    )  # fmt: skip
    assert parse_command(["celery", "-A", "app", "worker"]) == ("celery", "-A", "app", "worker")
    assert parse_command("   ") is None


@given(st.lists(st.text(min_size=1), min_size=1, max_size=5))
def test_any_argv_survives_a_quoted_round_trip(words: list[str]) -> None:
    import shlex

    words = [w.replace("\x00", "") or "x" for w in words]
    assert parse_command(shlex.join(words)) == tuple(words)


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
    file = read_config_file(str(path))
    settings = load(flags={}, env={"MODE": "Horizon"}, file=file, file_path=str(path))
    assert settings.mode == "horizon"
    assert valid_modes(settings.modes) == ("web", "worker", "scheduler", "horizon", "migrate")
    assert settings.modes["horizon"].overrides == {"stop_timeout": 90.0}
    assert settings.modes["migrate"].supervise is False


def test_config_file_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("stop_timeout = = 3\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: not valid TOML"):
        read_config_file(str(bad))
    with pytest.raises(ConfigError, match="no such file"):
        read_config_file(str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="is a directory"):
        read_config_file(str(tmp_path))


def test_config_file_typos_and_bad_modes_are_reported() -> None:
    file = {"stop_timout": 3, "modes": {"x y": {"command": "a"}, "ok": {"colour": "red"}}}
    with pytest.raises(ConfigError) as caught:
        load(flags={}, env={}, file=file)
    problems = " | ".join(caught.value.problems)
    assert "unknown key 'stop_timout'" in problems
    assert "[modes.x y]" in problems
    assert "colour" in problems
