"""Every defect found by trying to break the entrypoint, each with its regression test.

Real processes throughout: the entrypoint as users start it, hostile peers on
loopback, files the way an attacker or a typo would leave them.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from entrypoint.cli.inputs import gather
from entrypoint.errors import ConfigError, EntrypointError
from entrypoint.plan.redact import secret_values
from entrypoint.plan.settings import load
from entrypoint.runtime.signals import coalesce
from tests.helpers import (
    CHILD,
    ENTRYPOINT,
    Running,
    base_env,
    entrypoint,
    exited,
    run_entrypoint,
    wait_until,
)
from tests.probe_helpers import LoopbackServer, closed_port
from tests.servers import require_server

SECRET = "Zx9Secret"


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The only line on stderr (an error is always one line, never a traceback)."""
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def worker_env(**extra: str) -> dict[str, str]:
    return base_env(**{"MODE": "worker", "ENTRYPOINT_STOP_TIMEOUT": "5", **extra})


# -- the supervisor must never die of a lost log channel ------------------------------


def test_a_closed_stderr_never_ends_supervision_and_a_stop_still_stops() -> None:
    read_end, write_end = os.pipe()
    ignore_usr1 = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGUSR1, signal.SIG_IGN)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [*ENTRYPOINT, "run", "--", sys.executable, "-c", ignore_usr1],
        env=worker_env(),
        stdout=subprocess.PIPE,
        stderr=write_end,
        text=True,
    )
    os.close(write_end)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        os.close(read_end)  # the log reader goes away (a dead `| tee`)
        proc.send_signal(signal.SIGUSR1)  # the next log line meets a broken pipe
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(0.5)  # still supervising; the old version exited 1 here
        child = _only_child(proc.pid)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 128 + signal.SIGTERM  # the child's status, not 1 or 120
        assert wait_until(lambda: exited(child), 5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def _only_child(pid: int) -> int:
    from tests.helpers import descendants

    assert wait_until(lambda: bool(descendants(pid)), 5)
    return descendants(pid)[0]


def test_a_closed_stdout_of_explain_is_not_status_120() -> None:
    proc = subprocess.Popen(
        [*ENTRYPOINT, "explain", "--json", "--", "true"],
        env=worker_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    proc.stdout.close()  # `| head -0`
    _out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert b"Traceback" not in err


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tiny tmpfs needs root")
def test_a_full_disk_under_the_state_file_falls_back_and_health_stays_truthful(
    tmp_path: Path,
) -> None:
    full = tmp_path / "full"
    full.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(full)], capture_output=True
    )
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr!r}")
    try:
        _fill(full / "filler")
        env = worker_env(ENTRYPOINT_STATE_FILE=str(full / "state.json"))
        with entrypoint("run", "--", *CHILD, env=env) as run:
            run.wait_stdout(r"^ready")
            run.wait_event("state_file_fallback")
            assert wait_until(lambda: run_entrypoint("health", env=env).returncode == 0, 5)
            run.signal(signal.SIGTERM)
            assert run.wait() == 0
    finally:
        subprocess.run(["umount", str(full)], check=False)
        fallback = Path(f"/dev/shm/entrypoint-state.{os.geteuid()}.json")
        fallback.unlink(missing_ok=True)


def _fill(path: Path) -> None:
    """Write to `path` until its file system is full."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"x" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)


# -- secrets --------------------------------------------------------------------------


@pytest.mark.parametrize("password", ["Zx9?Secret", "Zx9/Secret", "Zx9 Secret", "Zx9#Secret"])
def test_the_lease_uses_the_one_parse_of_the_queue_url(password: str) -> None:
    url = f"redis://:{password}@127.0.0.1:{closed_port()}"
    env = base_env(MODE="scheduler", SCHEDULER_CMD="true", QUEUE_URL=url)
    explained = run_entrypoint("explain", "--json", env=env)
    assert explained.returncode == 0, explained.stderr
    plan = json.loads(explained.stdout)
    assert plan["lease"]["url"] == f"redis://:***@127.0.0.1:{url.rsplit(':', 1)[1]}"
    env["ENTRYPOINT_WAIT_TIMEOUT"] = "0"
    ran = run_entrypoint("run", env=env)
    assert ran.returncode == 69, ran.stderr
    for text in (explained.stdout, explained.stderr, ran.stdout, ran.stderr):
        assert "Zx9" not in text


def test_secret_values_hold_blanks_question_marks_and_hashes() -> None:
    env = {"QUEUE_URL": "redis://:pa ss?w#rd Zx9@h:1/0", "OTHER": "nats://tok3n Zx9@n"}
    found = secret_values(env)
    assert "pa ss?w#rd Zx9" in found
    assert "tok3n Zx9" in found


@pytest.mark.parametrize("host", ["tcp://:Zx9 Secret@x", "u:Zx9Secret@x", "Zx9Secret@x"])
def test_a_redis_host_that_holds_userinfo_is_never_echoed(host: str) -> None:
    env = base_env(QUEUE_CONNECTION="redis", REDIS_HOST=host)
    result = run_entrypoint("run", "--", "true", env=env)
    assert result.returncode == 78
    line = one_line(result)
    assert "REDIS_HOST" in line
    assert "Zx9" not in line


def test_a_user_equal_to_its_password_shows_the_user_only() -> None:
    env = worker_env(QUEUE_URL="amqp://guest:guest@rabbit:5672/")
    plan = json.loads(run_entrypoint("explain", "--json", "--", "true", env=env).stdout)
    assert plan["dependencies"][0]["url"] == "amqp://guest:***@rabbit:5672"


# -- crashes that must be clean errors -------------------------------------------------


@pytest.mark.parametrize("variable", ["ENTRYPOINT_WAIT_TIMEOUT", "ENTRYPOINT_PROBE_TIMEOUT"])
@pytest.mark.parametrize("value", ["999999999", "3000000", "1e300"])
def test_huge_waits_mean_forever_and_a_stop_still_ends_them(variable: str, value: str) -> None:
    env = worker_env(QUEUE_URL=f"redis://127.0.0.1:{closed_port()}", **{variable: value})
    with entrypoint("run", "--", *CHILD, env=env) as run:
        run.wait_event("dependency_waiting", timeout=15)
        run.signal(signal.SIGTERM)
        sent = time.monotonic()
        assert run.wait(5) == 128 + signal.SIGTERM
        assert time.monotonic() - sent < 2
        assert not [line for line in run.stderr if "internal error" in line]


@pytest.mark.parametrize("value", ["3000000", "1e300"])
def test_a_huge_backoff_sleeps_and_a_stop_ends_it(value: str) -> None:
    env = worker_env(ENTRYPOINT_BACKOFF_INITIAL=value, ENTRYPOINT_BACKOFF_MAX=value)
    with entrypoint("run", "--", "sh", "-c", "exit 3", env=env) as run:
        assert run.wait_event("restart_scheduled")[0]["delay_s"] > 1e6
        run.signal(signal.SIGTERM)
        assert run.wait(5) == 3


def _config_cases(tmp_path: Path) -> dict[str, str]:
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    locked = tmp_path / "locked.toml"
    locked.write_text("stop_timeout = 3\n")
    locked.chmod(0)
    return {
        "name too long": str(tmp_path / ("x" * 300)),
        "symlink loop": str(loop),
        "directory": str(tmp_path),
        "no permission": str(locked),
        "device": "/dev/zero",
        "fifo": _fifo(tmp_path),
    }


def _fifo(tmp_path: Path) -> str:
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return str(path)


# Root, but without the capabilities that let it ignore file permissions and
# ownership: what a non-root supervisor meets, with the same interpreter.
UNPRIVILEGED = [
    "setpriv",
    "--bounding-set=-dac_override,-dac_read_search,-fowner",
    "--inh-caps=-dac_override,-dac_read_search,-fowner",
    "--",
]


@pytest.mark.parametrize("command", ["run", "explain", "check", "health", "status"])
def test_a_config_file_that_cannot_be_read_is_one_line_in_every_command(
    tmp_path: Path, command: str
) -> None:
    for case, path in _config_cases(tmp_path).items():
        env = worker_env(ENTRYPOINT_CONFIG=path)
        argv = [*ENTRYPOINT, command] + (["--", "true"] if command in ("run", "check") else [])
        if case == "no permission" and os.geteuid() == 0:
            argv = [*UNPRIVILEGED, *argv]
        result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=20)
        text = result.stdout + result.stderr
        assert "Traceback" not in text, (case, text)
        assert path in text, (case, text)
        lines = [line for line in text.splitlines() if line.strip()]
        assert len(lines) == 1, (case, text)
        # health answers for HEALTHCHECK: 0 or 1, never another status.
        assert result.returncode == (1 if command == "health" else 78), (case, text)


def test_a_config_of_dev_zero_is_refused_at_once() -> None:
    started = time.monotonic()
    result = run_entrypoint("run", "--", "true", env=worker_env(ENTRYPOINT_CONFIG="/dev/zero"))
    assert result.returncode == 78
    assert "not a regular file" in one_line(result)
    assert time.monotonic() - started < 5


# -- log-line forgery -------------------------------------------------------------------


@pytest.mark.parametrize(
    "env",
    [
        {"ENTRYPOINT_STOP_TIMEOUT": "5\nforged: line"},
        {"ENTRYPOINT_LOG_LEVEL": "info\nforged: line"},
        {"MODE": "work\nforged: line"},
        {"WORKER_CMD": "php 'artisan\nforged: line"},
    ],
)
def test_a_value_with_a_newline_is_one_line(env: dict[str, str]) -> None:
    result = run_entrypoint("run", "--", "true", env=worker_env(**env))
    assert result.returncode in (64, 78)
    assert "forged" in one_line(result)


def test_a_config_file_mode_name_with_a_newline_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[modes."a\\nforged: line"]\ncommand = "true"\n')
    result = run_entrypoint("run", "--", "true", env=worker_env(ENTRYPOINT_CONFIG=str(config)))
    assert result.returncode == 78
    assert "forged" in one_line(result)


def _postgres_error(message: bytes) -> Any:
    fields = b"SFATAL\0C28P01\0M" + message + b"\0\0"
    reply = b"E" + struct.pack(">I", len(fields) + 4) + fields

    def handler(conn: socket.socket, stop: Any) -> None:
        conn.settimeout(2)
        first = conn.recv(8)
        if first == struct.pack(">II", 8, 80877103):  # SSLRequest: no
            conn.sendall(b"N")
            conn.recv(4096)
        conn.sendall(reply)
        stop.wait(2)

    return handler


def _mysql_error(message: bytes) -> Any:
    payload = b"\xff" + (1045).to_bytes(2, "little") + b"#28000" + message
    packet = len(payload).to_bytes(3, "little") + b"\0" + payload

    def handler(conn: socket.socket, stop: Any) -> None:
        conn.sendall(packet)
        stop.wait(2)

    return handler


def _amqp_close(message: bytes) -> Any:
    text = struct.pack(">B", len(message)) + message
    args = struct.pack(">HH", 10, 50) + struct.pack(">H", 403) + text + struct.pack(">HH", 0, 0)
    frame = struct.pack(">BHI", 1, 0, len(args)) + args + b"\xce"

    def handler(conn: socket.socket, stop: Any) -> None:
        conn.settimeout(2)
        conn.recv(8)
        conn.sendall(frame)
        stop.wait(2)

    return handler


@pytest.mark.parametrize(
    ("scheme", "make"),
    [
        ("postgresql://app@127.0.0.1:{port}/app", _postgres_error),
        ("mysql://127.0.0.1:{port}", _mysql_error),
        ("amqp://127.0.0.1:{port}", _amqp_close),
    ],
)
def test_a_server_text_with_a_newline_is_one_line(scheme: str, make: Any) -> None:
    with LoopbackServer(make(b"denied\nforged: line")) as server:
        env = worker_env(QUEUE_URL=scheme.format(port=server.port), ENTRYPOINT_WAIT_TIMEOUT="0")
        result = run_entrypoint("check", "--", "true", env=env)
        ran = run_entrypoint("run", "--", "true", env=env)
    assert result.returncode == 69
    assert not [line for line in result.stdout.splitlines() if line.startswith("forged")]
    assert ran.returncode == 69
    for line in ran.stderr.splitlines():
        assert line.startswith(("{", "entrypoint: error:")), line  # JSON events, or the error


# -- health cannot be fooled --------------------------------------------------------------


def _pid1_start() -> str:
    with open("/proc/1/stat") as handle:
        return handle.read().rsplit(")", 1)[-1].split()[19]


def test_a_state_file_naming_any_live_process_proves_nothing(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    forged = {
        "mode": "worker",
        "state": "running",
        "supervisor_pid": 1,
        "supervisor_start": _pid1_start(),
        "child_pid": 1,
    }
    state.write_text(json.dumps(forged))
    env = worker_env(ENTRYPOINT_STATE_FILE=str(state))
    result = run_entrypoint("health", env=env)
    assert result.returncode == 1
    assert "not an entrypoint supervisor" in result.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_a_state_file_of_another_user_is_not_read(tmp_path: Path) -> None:
    env = worker_env(ENTRYPOINT_STATE_FILE=str(tmp_path / "state.json"))
    with entrypoint("run", "--", *CHILD, env=env) as run:
        run.wait_stdout(r"^ready")
        assert wait_until(lambda: run_entrypoint("health", env=env).returncode == 0, 5)
        os.chown(tmp_path / "state.json", 12345, 12345)
        result = run_entrypoint("health", env=env)
        assert result.returncode == 1
        assert "belongs to another user" in result.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="a file of another user needs root")
def test_a_supervisor_that_cannot_replace_a_foreign_state_file_falls_back(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777 | stat.S_ISVTX)  # noqa: S103 - /tmp's mode, on purpose
    os.chown(shared, 12345, 12345)
    foreign = shared / "state.json"
    foreign.write_text(json.dumps({"mode": "worker", "state": "running", "supervisor_pid": 1}))
    os.chown(foreign, 12345, 12345)  # another user's, in a sticky directory
    fallback = Path(f"/dev/shm/entrypoint-state.{os.geteuid()}.json")
    fallback.unlink(missing_ok=True)
    env = worker_env(ENTRYPOINT_STATE_FILE=str(foreign))
    with Running([*UNPRIVILEGED, *ENTRYPOINT, "run", "--", *CHILD], env) as run:
        run.wait_stdout(r"^ready")
        run.wait_event("state_file_fallback")
        assert wait_until(lambda: run_entrypoint("health", env=env).returncode == 0, 5)
        assert "running" in run_entrypoint("health", env=env).stdout
        assert json.loads(foreign.read_text())["supervisor_pid"] == 1  # left as it was
    fallback.unlink(missing_ok=True)


# -- what a new user tripped on -------------------------------------------------------------


def test_check_finds_every_error_run_would() -> None:
    env = {"PATH": os.environ["PATH"], "MODE": "worker"}
    env["PYTHONPATH"] = base_env()["PYTHONPATH"]
    checked = run_entrypoint("check", env=env)
    ran = run_entrypoint("run", env=env)
    assert (checked.returncode, ran.returncode) == (78, 78)
    assert "WORKER_CMD" in one_line(checked)


def test_explain_shows_the_plan_with_the_problem_named() -> None:
    result = run_entrypoint("explain", env=worker_env())
    assert result.returncode == 78
    assert "mode          worker (supervise)" in result.stdout
    assert "problem       no command for mode 'worker'" in result.stdout


def test_typos_in_entrypoint_variables_are_named_with_the_closest_one() -> None:
    env = worker_env(ENTRYPOINT_STOP_TIMOUT="40", ENTRYPOINT_RESTART="never")
    result = run_entrypoint("run", "--", "true", env=env)
    (event,) = [
        json.loads(line) for line in result.stderr.splitlines() if "unknown_variable" in line
    ]
    assert (event["name"], event["closest"]) == (
        "ENTRYPOINT_STOP_TIMOUT",
        "ENTRYPOINT_STOP_TIMEOUT",
    )
    strict = run_entrypoint("run", "--", "true", env={**env, "ENTRYPOINT_STRICT": "1"})
    assert strict.returncode == 78
    line = one_line(strict)
    assert "ENTRYPOINT_STOP_TIMOUT" in line
    assert "ENTRYPOINT_STOP_TIMEOUT" in line


def test_health_in_backoff_counts_down() -> None:
    env = worker_env(ENTRYPOINT_BACKOFF_INITIAL="30", ENTRYPOINT_BACKOFF_MAX="30")
    with entrypoint("run", "--", "sh", "-c", "exit 3", env=env) as run:
        run.wait_event("restart_scheduled")
        assert wait_until(lambda: "restart in" in run_entrypoint("health", env=env).stdout, 5)
        first = run_entrypoint("health", env=env).stdout
        assert wait_until(lambda: run_entrypoint("health", env=env).stdout != first, 5)


def test_explain_shows_where_wait_for_comes_from_and_no_web_health_url_in_worker_mode(
    tmp_path: Path,
) -> None:
    config = tmp_path / "c.toml"
    config.write_text('wait_for = ["tcp://db:5432"]\n')
    env = worker_env(ENTRYPOINT_CONFIG=str(config), ENTRYPOINT_HEALTH_URL="http://127.0.0.1/")
    plan = json.loads(run_entrypoint("explain", "--json", "--", "true", env=env).stdout)
    assert plan["dependencies"][0]["source"].endswith("config file" if False else "wait_for")
    assert "health_url" not in plan
    assert isinstance(plan["wait"]["timeout_s"], float)
    assert isinstance(plan["stop"]["timeout_s"], float)


def test_run_help_shows_defaults() -> None:
    help_text = run_entrypoint("run", "--help").stdout
    flat = "".join(help_text.split())  # click wraps long lines, even inside a path
    assert "[default:25.0]" in flat
    assert "[default:/tmp/entrypoint-state.json]" in flat


def test_the_lease_is_released_before_stop_finished() -> None:
    require_server("redis")
    key = f"entrypoint:test:release:{os.getpid()}:{time.monotonic_ns()}"
    env = base_env(
        MODE="scheduler",
        QUEUE_URL="redis://127.0.0.1:6379/0",
        ENTRYPOINT_LEASE_KEY=key,
        ENTRYPOINT_LEASE_TTL="3",
    )
    with entrypoint("run", "--", *CHILD, env=env) as run:
        run.wait_stdout(r"^ready")
        run.signal(signal.SIGTERM)
        assert run.wait() == 0
    names = [event["event"] for event in run.events()]
    assert names.index("leader_released") < names.index("stop_finished")


# -- properties over config files -------------------------------------------------------------

TOML_VALUES = st.one_of(
    st.integers(-10, 10**12),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.booleans(),
    st.lists(st.text(max_size=8), max_size=3),
)
KEYS = st.sampled_from(
    ["stop_timeout", "wait_for", "worker_cmd", "lease_ttl", "mode", "restart", "bogus", "max_rss"]
)


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if value != value else repr(value)  # noqa: PLR0124 - NaN
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)
    return str(value)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    top=st.dictionaries(KEYS, TOML_VALUES, max_size=4),
    mode_name=st.text(min_size=1, max_size=8),
    mode=st.dictionaries(st.sampled_from(["command", "run", "stop_timeout", "x"]), TOML_VALUES),
)
def test_any_config_file_settles_or_fails_with_one_line_per_problem(
    tmp_path_factory: pytest.TempPathFactory, top: dict[str, object], mode_name: str,
    mode: dict[str, object],
) -> None:  # fmt: skip
    path = tmp_path_factory.mktemp("config") / "c.toml"
    body = "".join(f"{key} = {_toml(value)}\n" for key, value in top.items())
    body += f"[modes.{json.dumps(mode_name)}]\n"
    body += "".join(f"{key} = {_toml(value)}\n" for key, value in mode.items())
    path.write_text(body)
    failure: EntrypointError | None = None
    try:
        load(gather({"ENTRYPOINT_CONFIG": str(path)}))
    except EntrypointError as exc:
        failure = exc
    problems = failure.problems if isinstance(failure, ConfigError) else []
    if failure is not None and not problems:
        problems = [failure.message]
    for problem in problems:
        assert problem
        assert "\n" not in problem


# -- a storm of signals must not starve the loop --------------------------------------

TERM, INT, USR1, WINCH = signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGWINCH


@pytest.mark.parametrize(
    ("taken", "forwarded"),
    [
        ([], []),
        ([WINCH] * 50_000, [WINCH]),
        ([USR1, WINCH, USR1, WINCH], [USR1, WINCH]),
        ([TERM], [TERM]),
        ([TERM, TERM], [TERM, TERM]),  # the second is "stop now": kept
        ([TERM, WINCH, INT, TERM, TERM], [TERM, WINCH, INT]),
        ([WINCH, TERM, WINCH, TERM], [WINCH, TERM, TERM]),
    ],
)
def test_a_batch_of_signals_is_coalesced_as_the_kernel_holds_them(
    taken: list[int], forwarded: list[int]
) -> None:
    assert coalesce(taken) == forwarded


STORM = """
import os, signal, sys, time
pid, seconds = int(sys.argv[1]), float(sys.argv[2])
sent, end = 0, time.monotonic() + seconds
while time.monotonic() < end:
    os.kill(pid, signal.SIGWINCH)
    sent += 1
print(sent)
"""


def test_a_signal_storm_never_starves_the_heartbeat_and_a_stop_still_stops(
    tmp_path: Path,
) -> None:
    # Five watchdog timeouts of SIGWINCH as fast as one process sends them,
    # to a supervisor whose child beats every 0.2 s: every beat is still read
    # (no false watchdog_expired, one child all along), and a stop still stops.
    env = worker_env(
        ENTRYPOINT_NOTIFY="1",
        ENTRYPOINT_WATCHDOG_TIMEOUT="1",
        ENTRYPOINT_STATE_FILE=str(tmp_path / "state.json"),
    )
    with entrypoint("run", "--", *CHILD, "--watchdog-every", "0.2", env=env) as run:
        run.wait_stdout(r"^ready")
        storm = subprocess.run(
            [sys.executable, "-c", STORM, str(run.pid), "5"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        assert int(storm.stdout) > 10_000
        assert run.wait_event("signal_forwarded")
        assert not run.events("watchdog_expired")
        run.signal(signal.SIGTERM)
        assert run.wait(15) == 0
    assert len(run.events("child_started")) == 1
    assert not run.events("watchdog_expired")


# Until the target is a zombie (its parent, the test, has not reaped it yet).
TERM_STORM = """
import os, signal, sys
pid, sent = int(sys.argv[1]), 0
def ended():
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
while sent % 256 or not ended():
    os.kill(pid, signal.SIGTERM)
    sent += 1
print(sent)
"""


@pytest.mark.parametrize("on_term", ["exit", "ignore"])
def test_a_storm_of_stop_signals_ends_with_the_childs_status(on_term: str) -> None:
    # TERM after TERM until the entrypoint is gone: the stop keeps its deadline,
    # and the last ones, arriving while the interpreter shuts down, cannot end
    # the process by the signal: it exits with the child's status.
    env = worker_env(ENTRYPOINT_STOP_TIMEOUT="1")
    with entrypoint("run", "--", *CHILD, "--on-term", on_term, env=env) as run:
        run.wait_stdout(r"^ready")
        storm = subprocess.run(
            [sys.executable, "-c", TERM_STORM, str(run.pid)],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        code = run.wait(15)
    assert int(storm.stdout) > 100
    (exited_event,) = run.events("child_exited")
    assert code == exited_event["exit_code"]
    if on_term == "ignore":
        assert code == 128 + signal.SIGKILL
        assert run.events("stop_escalated")
