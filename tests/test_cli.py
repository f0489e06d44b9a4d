"""The CLI with real processes: exec keeps the PID, statuses pass through, bad input."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ENTRYPOINT, base_env, run_entrypoint
from tests.servers import missing, require_server


def clean_env(**extra: str) -> dict[str, str]:
    """No ENTRYPOINT_* at all: web mode takes the fast path."""
    env = base_env(**extra)
    env.pop("ENTRYPOINT_LOG_FORMAT")
    return env


def test_web_exec_keeps_the_pid() -> None:
    proc = subprocess.Popen(
        [*ENTRYPOINT, "run", "--", "sh", "-c", "echo $$"],
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert int(out) == proc.pid


def test_web_exec_keeps_the_pid_on_the_slow_path_too() -> None:
    env = clean_env(ENTRYPOINT_STOP_TIMEOUT="5", MODE=" WEB ")
    proc = subprocess.Popen(
        [*ENTRYPOINT, "run", "--mode", "web", "sh", "-c", "echo $$"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert int(out) == proc.pid
    assert json.loads(err.splitlines()[0])["event"] == "mode_selected"


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("code", [0, 1, 2, 64, 127, 255])
def test_exit_status_of_the_web_command_is_the_entrypoints(code: int, fast: bool) -> None:
    env = clean_env() if fast else base_env(ENTRYPOINT_STOP_TIMEOUT="3")
    result = run_entrypoint("run", "--", "sh", "-c", f"exit {code}", env=env)
    assert result.returncode == code


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL, signal.SIGSEGV])
def test_a_web_command_killed_by_a_signal_dies_by_that_signal(signum: int) -> None:
    result = run_entrypoint("run", "--", "sh", "-c", f"kill -{signum} $$", env=clean_env())
    assert result.returncode == -signum  # the same process: what a shell shows as 128+n


def test_fast_path_logs_mode_selected_as_json_and_imports_no_click() -> None:
    result = subprocess.run(
        # -S: no site, so only what the entrypoint itself imports is listed
        [sys.executable, "-S", "-X", "importtime", "-m", "entrypoint", "run", "--", "true"],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert result.returncode == 0
    lines = result.stderr.splitlines()
    event = json.loads(next(line for line in lines if line.startswith("{")))
    assert event["event"] == "mode_selected"
    assert {"level", "timestamp", "mode"} <= event.keys()
    imported = {line.split("|")[-1].strip() for line in lines if line.startswith("import time:")}
    assert "entrypoint.boot" in imported
    assert not imported & {"click", "structlog", "tenacity", "dataclasses", "json", "re"}


@pytest.mark.parametrize("fast", [True, False])
def test_command_not_found_is_127_and_one_line(fast: bool) -> None:
    env = clean_env() if fast else base_env(ENTRYPOINT_STOP_TIMEOUT="3")
    result = run_entrypoint("run", "--", "no-such-command-xyz", env=env)
    assert result.returncode == 127
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert errors == ["entrypoint: error: command not found: no-such-command-xyz"]


def test_a_directory_as_command_is_126(tmp_path: Path) -> None:
    result = run_entrypoint("run", "--", str(tmp_path), env=clean_env())
    assert result.returncode == 126
    assert "not executable" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_file_without_exec_bit_is_126(tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    result = run_entrypoint("run", "--", str(script), env=clean_env())
    assert result.returncode == 126


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("env", "args", "code", "names"),
    [
        ({"MODE": "wörker"}, [], 64, ["'wörker'", "web, worker, scheduler"]),
        ({"MODE": "wor ker"}, [], 64, ["'wor ker'", "valid modes"]),
        ({}, ["--bogus-flag"], 64, ["--bogus-flag"]),
        ({"MODE": "worker", "ENTRYPOINT_STOP_TIMEOUT": "abc"}, [], 78,
         ["ENTRYPOINT_STOP_TIMEOUT=abc", "not a number"]),
        ({"MODE": "worker", "ENTRYPOINT_STOP_TIMEOUT": "-1"}, [], 78,
         ["ENTRYPOINT_STOP_TIMEOUT=-1", "negative"]),
        ({"ENTRYPOINT_STOP_TIMEOUT": "abc"}, [], 78, ["ENTRYPOINT_STOP_TIMEOUT=abc"]),
        ({"MODE": "worker", "WORKER_CMD": "php 'artisan"}, [], 78, ["WORKER_CMD", "quotation"]),
        ({"MODE": "worker"}, ["--"], 78, ["WORKER_CMD"]),
        ({"MODE": "scheduler"}, ["--"], 78, ["SCHEDULER_CMD"]),
        ({"WEB_CMD": ""}, ["--"], 78, ["WEB_CMD"]),
        ({"QUEUE_URL": "redis://:hunter2@host:99999"}, [], 78, ["QUEUE_URL"]),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_with_the_contracts_code(
    env: dict[str, str], args: list[str], code: int, names: list[str]
) -> None:
    argv = ["run", *args] if args else ["run", "--", "true"]
    result = run_entrypoint(*argv, env=base_env(**env))
    assert result.returncode == code, result.stderr
    line = one_error_line(result)
    assert line.startswith("entrypoint: error: ")
    for name in names:
        assert name in line
    assert "hunter2" not in result.stderr


def test_config_file_that_is_not_toml_is_78(tmp_path: Path) -> None:
    path = tmp_path / "conf.toml"
    path.write_text("this is = not = toml\n")
    result = run_entrypoint("run", "--", "true", env=base_env(ENTRYPOINT_CONFIG=str(path)))
    assert result.returncode == 78
    assert "not valid TOML" in one_error_line(result)


def test_config_file_that_does_not_exist_is_78(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    result = run_entrypoint("run", "--", "true", env=base_env(ENTRYPOINT_CONFIG=str(missing)))
    assert result.returncode == 78
    assert f"ENTRYPOINT_CONFIG={missing}: no such file" in one_error_line(result)


def test_custom_exec_mode_from_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "conf.toml"
    path.write_text('[modes.migrate]\ncommand = "sh -c \'exit 7\'"\nrun = "exec"\n')
    env = base_env(ENTRYPOINT_CONFIG=str(path), MODE="migrate")
    assert run_entrypoint("run", env=env).returncode == 7


def test_version_and_help_everywhere() -> None:
    version = run_entrypoint("--version")
    assert version.returncode == 0
    assert "entrypoint" in version.stdout
    for command in ([], ["run"], ["check"], ["explain"], ["health"], ["handoff"]):
        result = run_entrypoint(*command, "--help")
        assert result.returncode == 0, (command, result.stderr)
        assert "Usage: entrypoint" in result.stdout
    assert "ENTRYPOINT_STOP_TIMEOUT" in run_entrypoint("run", "--help").stdout


def test_python_dash_m_and_the_console_script_are_the_same() -> None:
    script = Path(sys.executable).with_name("entrypoint")
    if not script.exists():
        missing(f"the console script is not installed next to {sys.executable}")
    result = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, timeout=10, check=False
    )
    assert result.stdout == run_entrypoint("--version").stdout


def test_explain_redacts_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    env = base_env(MODE="worker", QUEUE_URL="redis://user:hunter2@redis:6379/1")
    result = run_entrypoint(
        "explain", "--json", "--", "sh", "-c", f"touch {marker}", "--token=abcdef", env=env
    )
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["mode"] == "worker"
    assert plan["dependencies"][0]["url"] == "redis://user:***@redis:6379/1"
    assert "hunter2" not in result.stdout + result.stderr
    assert "abcdef" not in result.stdout
    assert not marker.exists()
    text = run_entrypoint("explain", "--", "true", env=env)
    assert "worker (supervise)" in text.stdout
    assert "hunter2" not in text.stdout


def test_log_format_and_level() -> None:
    env = base_env(MODE="web", ENTRYPOINT_LOG_FORMAT="console", ENTRYPOINT_STOP_TIMEOUT="1")
    result = run_entrypoint("run", "--", "true", env=env)
    assert "mode_selected" in result.stderr
    assert not result.stderr.startswith("{")
    env["ENTRYPOINT_LOG_LEVEL"] = "warning"
    assert run_entrypoint("run", "--", "true", env=env).stderr == ""


def test_exec_restores_signal_dispositions() -> None:
    # Python ignores SIGPIPE; the web command must start with it at its default.
    # grep reads its own status: exec'd by the entrypoint, it has what the entrypoint left.
    # (Through `sh -c`, dash blocks every signal around its forks: a race.)
    result = run_entrypoint("run", "--", "grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status",
                            env=clean_env())  # fmt: skip
    fields = dict(line.split(":") for line in result.stdout.splitlines())
    ignored, blocked = int(fields["SigIgn"], 16), int(fields["SigBlk"], 16)
    assert ignored & (1 << (signal.SIGPIPE - 1)) == 0
    assert blocked == 0


def test_check_reports_each_dependency_and_exits_0_or_69() -> None:
    require_server("redis")
    env = base_env(MODE="worker", QUEUE_URL="redis://127.0.0.1:6379/0")
    ok = run_entrypoint("check", "--json", "--", "rq", "worker", env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    report = json.loads(ok.stdout)
    assert report["ok"] is True
    assert report["dependencies"][0]["depth"] == "handshake"
    env["ENTRYPOINT_WAIT_FOR"] = "tcp://127.0.0.1:1"
    bad = run_entrypoint("check", "--", "rq", "worker", env=env)
    assert bad.returncode == 69
    assert "127.0.0.1:1" in bad.stdout
    assert "configuration ok: mode worker" in bad.stdout


def test_check_with_a_wrong_password_is_69_and_shows_no_secret() -> None:
    require_server("redis")
    env = base_env(
        MODE="worker", QUEUE_URL="redis://nobody:hunter22@127.0.0.1:6379/0", WORKER_CMD="rq worker"
    )
    result = run_entrypoint("check", env=env)
    assert result.returncode == 69
    assert "WRONGPASS" in result.stdout
    assert "hunter22" not in result.stdout + result.stderr


def test_run_with_a_wrong_password_fails_at_once_with_69() -> None:
    require_server("redis")
    env = base_env(
        MODE="worker",
        QUEUE_URL="redis://nobody:hunter22@127.0.0.1:6379/0",
        ENTRYPOINT_WAIT_TIMEOUT="30",
    )
    result = run_entrypoint("run", "--", "true", env=env, timeout=10)
    assert result.returncode == 69
    assert "WRONGPASS" in result.stderr
    assert "hunter22" not in result.stderr
    assert "child_started" not in result.stderr


def test_an_unexpected_error_is_one_line_without_secrets() -> None:
    script = (
        "import sys, entrypoint.cli.run as run\n"
        "def broken(_inputs):\n"
        "    raise RuntimeError('cannot reach redis://u:hunter22@redis:6379')\n"
        "run.load = broken\n"
        "from entrypoint import boot\n"
        "sys.exit(boot.main(['run', '--', 'true']))\n"
    )
    env = base_env(ENTRYPOINT_STOP_TIMEOUT="5")  # not the fast path
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=20
    )
    assert result.returncode == 70
    err = result.stderr
    assert (
        err
        == "entrypoint: error: internal error: RuntimeError: cannot reach redis://u:***@redis:6379\n"
    )
