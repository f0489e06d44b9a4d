"""Supervision with real processes: signals, stop, restarts, exit statuses, health."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import (
    CHILD,
    Running,
    base_env,
    entrypoint,
    exited,
    gone,
    orphan_pids,
    run_entrypoint,
    sleep_until,
    wait_until,
    zombies_of,
)

FORWARDED = (
    "TERM", "INT", "QUIT", "HUP", "USR1", "USR2", "WINCH", "TTIN", "TTOU", "TSTP", "CONT", "ALRM",
)  # fmt: skip


def worker(*child_args: str, **env: str) -> Running:
    settings = {"MODE": "worker", "ENTRYPOINT_STOP_TIMEOUT": "10", **env}
    return entrypoint("run", "--", *CHILD, *child_args, env=base_env(**settings))


def child_pid(run: Running, timeout: float = 10) -> int:
    return int(run.wait_stdout(r"^ready \(pid: (\d+)\)", timeout)[-1].group(1))


@pytest.mark.parametrize("name", FORWARDED)
def test_every_forwarded_signal_reaches_the_child(name: str) -> None:
    with worker("--on-term", "ignore", ENTRYPOINT_STOP_TIMEOUT="1") as run:
        pid = child_pid(run)
        run.signal(getattr(signal, "SIG" + name))
        run.wait_stdout(rf"^signal SIG{name} \(pid: {pid}\)")
        event = run.wait_event("signal_forwarded")[0]
        assert event["signal"] == "SIG" + name
        assert event["child_pid"] == pid


@pytest.mark.parametrize("code", [0, 1, 2, 3, 64, 127, 128, 200, 255])
def test_exit_status_after_a_stop_is_the_childs(code: int) -> None:
    with worker("--exit-code", str(code)) as run:
        child_pid(run)
        run.signal(signal.SIGTERM)
        assert run.wait() == code
        assert run.wait_event("stop_finished")[0]["exit_code"] == code


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGSEGV, signal.SIGABRT, signal.SIGTERM])
def test_a_signal_death_is_reported_as_128_plus_n(signum: int) -> None:
    with worker("--die-by", str(signum)) as run:
        child_pid(run)
        run.signal(signal.SIGTERM)
        assert run.wait() == 128 + signum
        assert run.wait_event("child_exited")[0]["exit_code"] == 128 + signum


def test_stop_signal_translation() -> None:
    with worker(ENTRYPOINT_STOP_SIGNAL="QUIT") as run:
        pid = child_pid(run)
        run.signal(signal.SIGTERM)
        run.wait_stdout(rf"^signal SIGQUIT \(pid: {pid}\)")
        assert run.wait() == 0
        assert not [line for line in run.stdout if "SIGTERM" in line]


def test_a_child_that_ignores_term_is_killed_at_the_deadline_not_before() -> None:
    with worker("--on-term", "ignore", ENTRYPOINT_STOP_TIMEOUT="1.5") as run:
        child_pid(run)
        run.signal(signal.SIGTERM)
        sent = time.monotonic()
        assert run.wait(10) == 137
        assert time.monotonic() - sent >= 1.5
        assert run.events("stop_escalated")[0]["signal"] == "SIGKILL"


def test_a_second_term_is_forwarded_and_the_deadline_does_not_move() -> None:
    with worker("--on-term", "ignore", ENTRYPOINT_STOP_TIMEOUT="2") as run:
        pid = child_pid(run)
        run.signal(signal.SIGTERM)
        first = time.monotonic()
        run.wait_stdout(rf"^signal SIGTERM \(pid: {pid}\)")
        time.sleep(1)  # the second stop signal must come later than the first, by design
        run.signal(signal.SIGTERM)
        run.wait_stdout(rf"^signal SIGTERM \(pid: {pid}\)", count=2)
        assert run.wait(10) == 137
        assert time.monotonic() - first < 2.9  # killed 2 s after the FIRST signal
        assert len(run.events("stop_started")) == 1


@pytest.mark.parametrize("name", ["HUP", "USR1", "USR2", "WINCH", "ALRM"])
def test_signals_that_are_not_stops_stop_nothing(name: str) -> None:
    with worker() as run:
        pid = child_pid(run)
        run.signal(getattr(signal, "SIG" + name))
        run.wait_stdout(rf"^signal SIG{name}")
        run.signal(signal.SIGTERM)
        assert run.wait() == 0
        assert [e["pid"] for e in run.events("child_started")] == [pid]
        assert not run.events("restart_scheduled")


def test_signals_go_to_the_child_only_or_to_its_group() -> None:
    with worker("--grandchild", "--on-term", "ignore", ENTRYPOINT_STOP_TIMEOUT="1") as run:
        grandchild = int(run.wait_stdout(r"^grandchild ready \(pid: (\d+)\)")[0].group(1))
        run.signal(signal.SIGUSR1)
        run.wait_event("signal_forwarded")
        run.wait_stdout(r"^signal SIGUSR1")
        # A marker straight to the grandchild: a USR1 sent to it before would be
        # handled first (a pending lower-numbered signal goes first), so once the
        # marker is echoed, the grandchild has shown every USR1 it ever got.
        os.kill(grandchild, signal.SIGUSR2)
        run.wait_stdout(rf"^signal SIGUSR2 \(pid: {grandchild}\)")
        assert [line for line in run.stdout if "SIGUSR1" in line] == [
            f"signal SIGUSR1 (pid: {child_pid(run)})"
        ]
    with worker("--grandchild", ENTRYPOINT_SIGNAL_GROUP="1", ENTRYPOINT_STOP_TIMEOUT="1") as run:
        run.wait_stdout(r"^grandchild ready")
        run.signal(signal.SIGUSR1)
        run.wait_stdout(r"^signal SIGUSR1", count=2)


def test_sigkill_at_the_deadline_takes_the_whole_group() -> None:
    with worker("--grandchild", "--on-term", "ignore", ENTRYPOINT_STOP_TIMEOUT="0.5") as run:
        grandchild = int(run.wait_stdout(r"^grandchild ready \(pid: (\d+)\)")[0].group(1))
        run.signal(signal.SIGTERM)
        assert run.wait() == 137
        sleep_until(lambda: not _alive(grandchild), 5)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _delays(run: Running) -> list[float]:
    return [event["delay_s"] for event in run.events("restart_scheduled")]


def test_crash_loop_delays_grow_and_cap() -> None:
    env = base_env(MODE="worker", ENTRYPOINT_BACKOFF_INITIAL="0.05", ENTRYPOINT_BACKOFF_MAX="0.4")
    with entrypoint("run", "--", "sh", "-c", "exit 1", env=env) as run:
        run.wait_event("restart_scheduled", timeout=15, count=7)
        run.signal(signal.SIGTERM)
        assert run.wait() == 1
    delays = _delays(run)[:7]
    steps = [0.05, 0.1, 0.2, 0.4, 0.4, 0.4, 0.4]
    assert all(0.8 * s - 1e-3 <= d <= s + 1e-3 for d, s in zip(delays, steps, strict=True)), delays
    attempts = [event["attempt"] for event in run.events("restart_scheduled")][:7]
    assert attempts == [1, 2, 3, 4, 5, 6, 7]


def test_backoff_resets_after_the_child_stayed_up(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    plan = "fail,fail,fail,sleep0.6+fail,fail,serve"
    env = base_env(
        MODE="worker",
        ENTRYPOINT_BACKOFF_INITIAL="0.05",
        ENTRYPOINT_RESET_AFTER="0.5",
    )
    with entrypoint("run", "--", *CHILD, "--runs", str(runs), "--plan", plan, env=env) as run:
        run.wait_stdout(r"^ready")
        run.signal(signal.SIGTERM)
        assert run.wait() == 0
    attempts = [event["attempt"] for event in run.events("restart_scheduled")]
    assert attempts == [1, 2, 3, 1, 2]


def test_clean_exit_after_min_uptime_restarts_at_once_else_backs_off(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    env = base_env(MODE="worker", ENTRYPOINT_MIN_UPTIME="0.3", ENTRYPOINT_BACKOFF_INITIAL="0.2")
    plan = "sleep0.4+ok,ok,serve"
    with entrypoint("run", "--", *CHILD, "--runs", str(runs), "--plan", plan, env=env) as run:
        run.wait_stdout(r"^ready")
        run.signal(signal.SIGTERM)
        run.wait()
    events = run.events("restart_scheduled")
    assert [(e["delay_s"] == 0, e["reason"]) for e in events] == [
        (True, "clean exit"),
        (False, "exited 0 before 0.3 s"),
    ]


def test_gives_up_with_the_last_childs_status() -> None:
    env = base_env(
        MODE="worker",
        ENTRYPOINT_BACKOFF_INITIAL="0.01",
        ENTRYPOINT_MAX_RESTARTS="3",
        ENTRYPOINT_RESTART_WINDOW="60",
    )
    result = run_entrypoint("run", "--", "sh", "-c", "exit 5", env=env)
    assert result.returncode == 5
    events = [json.loads(line) for line in result.stderr.splitlines()]
    assert [e["event"] for e in events].count("child_started") == 4
    assert events[-1]["event"] == "gave_up"
    assert events[-1]["exit_code"] == 5


def test_term_during_a_long_backoff_exits_within_a_second_and_starts_nothing() -> None:
    env = base_env(MODE="worker", ENTRYPOINT_BACKOFF_INITIAL="30", ENTRYPOINT_BACKOFF_MAX="30")
    with entrypoint("run", "--", "sh", "-c", "exit 4", env=env) as run:
        run.wait_event("restart_scheduled")
        run.signal(signal.SIGTERM)
        sent = time.monotonic()
        assert run.wait(5) == 4
        assert time.monotonic() - sent < 1.0
        assert len(run.events("child_started")) == 1
        assert run.events("stop_finished")


@pytest.mark.parametrize(("code", "status"), [(127, "not found"), (126, "not executable")])
def test_a_command_that_cannot_run_is_permanent(tmp_path: Path, code: int, status: str) -> None:
    command = "no-such-command-xyz" if code == 127 else str(tmp_path)
    result = run_entrypoint("run", "--", command, env=base_env(MODE="worker"))
    assert result.returncode == code
    assert f"entrypoint: error: command is {status}" in result.stderr or status in result.stderr
    assert "restart_scheduled" not in result.stderr


def test_early_term_never_hangs() -> None:
    """TERM a few milliseconds after start, a hundred times: it always ends, promptly."""
    env = base_env(MODE="worker")
    for attempt in range(100):
        with entrypoint("run", "--", *CHILD, env=env) as run:
            time.sleep(0.001 * (attempt % 20))
            run.signal(signal.SIGTERM)
            code = run.wait(10)
            # Killed before Python ran a line of ours (-15), or stopped by us: no hang.
            assert code in (-signal.SIGTERM, 0, 128 + signal.SIGTERM), (
                attempt,
                "\n".join(run.stderr),
            )


def test_idle_supervisor_makes_no_context_switch() -> None:
    with worker() as run:
        child_pid(run)
        run.wait_event("child_started")
        # The start is over once the supervisor blocks in its one wait (epoll).
        assert wait_until(lambda: _wchan(run.pid) == "do_epoll_wait", 5), _wchan(run.pid)

        def switches() -> int:
            with open(f"/proc/{run.pid}/status") as handle:
                for line in handle:
                    if line.startswith("voluntary_ctxt_switches"):
                        return int(line.split()[1])
            raise AssertionError("no voluntary_ctxt_switches")

        before = switches()
        time.sleep(5)  # the measurement IS five idle seconds
        assert switches() - before == 0


def _wchan(pid: int) -> str:
    with open(f"/proc/{pid}/wchan") as handle:
        return handle.read().strip()


def test_state_file_and_health(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    env = base_env(MODE="worker", ENTRYPOINT_STATE_FILE=str(state))

    def health() -> subprocess.CompletedProcess[str]:
        return run_entrypoint("health", env=env)

    result = health()
    assert result.returncode == 1
    assert "no supervisor state" in result.stdout
    with entrypoint("run", "--", *CHILD, env=env) as run:
        pid = child_pid(run)
        sleep_until(lambda: json.loads(state.read_text())["state"] == "running", 5)
        result = health()
        assert result.returncode == 0, result.stdout
        assert f"child pid {pid} running" in result.stdout
        assert len(result.stdout.splitlines()) == 1
        data = json.loads(state.read_text())
        assert data["supervisor_pid"] == run.pid
        assert data["child_pid"] == pid
        run.signal(signal.SIGTERM)
        run.wait()
    result = health()
    assert result.returncode == 1
    assert "not running" in result.stdout or "stopped" in result.stdout
    state.write_text("{not json")
    assert "corrupt" in health().stdout


def test_health_in_backoff_is_unhealthy(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    env = base_env(MODE="worker", ENTRYPOINT_STATE_FILE=str(state), ENTRYPOINT_BACKOFF_INITIAL="30")
    with entrypoint("run", "--", "sh", "-c", "exit 3", env=env) as run:
        run.wait_event("restart_scheduled")
        sleep_until(lambda: json.loads(state.read_text())["state"] == "backoff", 5)
        result = run_entrypoint("health", env=env)
        assert result.returncode == 1
        assert "backoff" in result.stdout


def test_health_in_web_mode_answers_on_the_configuration() -> None:
    env = base_env()
    result = run_entrypoint("health", env=env)
    assert result.returncode == 0
    assert "configuration valid" in result.stdout
    bad = run_entrypoint("health", env=base_env(QUEUE_URL="ftp://x"))
    assert bad.returncode == 1
    assert "QUEUE_URL" in bad.stdout


def test_orphans_are_reaped_by_the_subreaper() -> None:
    with worker("--orphans", "20") as run:
        pids = orphan_pids(run)
        assert len(pids) == 20
        assert wait_until(lambda: all(exited(pid) for pid in pids), 10)
        # Every orphan has exited: each must now be reaped, none left a zombie.
        assert wait_until(lambda: all(gone(pid) for pid in pids), 5), zombies_of(run.pid)


def test_the_worker_starts_once_a_late_redis_answers(tmp_path: Path) -> None:
    """Redis comes up 2 s after the entrypoint: it waits, then starts the worker."""
    from tests.probe_helpers import free_port, require_binary

    binary = require_binary("redis-server")
    port = free_port()
    env = base_env(
        MODE="worker", QUEUE_URL=f"redis://127.0.0.1:{port}/0", ENTRYPOINT_WAIT_TIMEOUT="30"
    )
    with entrypoint("run", "--", *CHILD, env=env) as run:
        run.wait_event("dependency_waiting")
        time.sleep(2)  # the point of the test: the server starts late
        server = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--dir",
                str(tmp_path),
            ],
            stdout=subprocess.DEVNULL,
        )
        try:
            ready = run.wait_event("dependency_ready", timeout=15)[0]
            assert ready["detail"] == "PONG"
            child_pid(run)
            assert not run.events("dependency_failed")
            run.signal(signal.SIGTERM)
            assert run.wait() == 0
        finally:
            server.terminate()
            server.wait(10)
