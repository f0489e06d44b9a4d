"""`entrypoint handoff` with a fake `docker` first on PATH that records its calls."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import signal
import subprocess
import sys
import termios
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

from entrypoint.runtime.handoff import Compose, should_forward
from tests.helpers import wait_until

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

FAKE_DOCKER = """\
#!{python}
import json, os, sys
args = sys.argv[1:]
state = os.environ["FAKE_DOCKER_STATE"]
with open(os.environ["FAKE_DOCKER_LOG"], "a") as log:
    log.write(json.dumps({{"docker": args}}) + "\\n")
if os.environ.get("FAKE_DOCKER_NO_COMPOSE") and args[:1] == ["compose"]:
    sys.stderr.write("docker: unknown command: docker compose\\n")
    sys.exit(1)
if os.environ.get("FAKE_DOCKER_DOWN") and args[-1:] != ["version"]:
    sys.stderr.write("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
                     "Is the docker daemon running?\\n")
    sys.exit(1)
if args[-2:] == ["config", "--services"]:
    print("\\n".join(os.environ.get("FAKE_DOCKER_SERVICES", "worker jobs queue").split()))
elif "ps" in args:
    running = open(state).read() == "running"
    print("3f2a9c1b7d4e\\n5e6f7a8b9c0d" if running else "")
elif "stop" in args:
    if os.environ.get("FAKE_DOCKER_STOP_WAIT"):
        import time
        deadline = time.monotonic() + 30
        while not os.path.exists(os.environ["FAKE_DOCKER_STOP_WAIT"]):
            assert time.monotonic() < deadline
            time.sleep(0.02)
    if os.environ.get("FAKE_DOCKER_STOP_FAILS"):
        sys.stderr.write("Error response from daemon: cannot stop container\\n")
        sys.exit(1)
    open(state, "w").write("stopped")
elif "start" in args:
    open(state, "w").write("running")
"""

DEV = """\
import json, os, signal, sys
log_path = os.environ["FAKE_DOCKER_LOG"]
exit_on = os.environ.get("DEV_EXIT_ON", "INT,TERM").split(",")
def note(**event):
    with open(log_path, "a") as log:
        log.write(json.dumps(event) + "\\n")
def on_signal(signum, _frame):
    name = signal.Signals(signum).name.removeprefix("SIG")
    note(dev="signal", signal=name)
    if name in exit_on:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
for name in ("INT", "TERM", "HUP", "USR1", "QUIT"):
    signal.signal(getattr(signal, "SIG" + name), on_signal)
note(dev="start", pid=os.getpid(), argv=sys.argv[1:], tty=os.isatty(0))
if sys.argv[1:2] == ["exit"]:
    note(dev="end")
    sys.exit(int(sys.argv[2]))
while True:
    signal.pause()
"""


@dataclass
class World:
    tmp: Path
    env: dict[str, str]
    log: Path
    state: Path
    dev: Path

    def stopped(self) -> None:
        self.state.write_text("stopped")

    def events(self) -> list[dict[str, object]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line]

    def docker_calls(self) -> list[list[str]]:
        """The calls that act or ask about the service (the `config --services` check aside)."""
        calls = [list(map(str, e["docker"])) for e in self.events() if "docker" in e]  # type: ignore[call-overload]
        return [call for call in calls if call[-2:] != ["config", "--services"]]

    def timeline(self) -> list[str]:
        """`docker <verb>` and `dev <what>` in the order they happened."""
        out = []
        for event in self.events():
            if "docker" in event:
                args = [str(a) for a in event["docker"]]  # type: ignore[attr-defined]
                if args[-2:] == ["config", "--services"]:
                    continue
                verb = next(a for a in args if a in ("ps", "stop", "start", "version"))
                out.append(f"docker {verb}")
            else:
                what = event["dev"]
                out.append(f"dev {what} {event['signal']}" if what == "signal" else f"dev {what}")
        return out


@pytest.fixture
def world(tmp_path: Path) -> World:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(FAKE_DOCKER.format(python=sys.executable))
    docker.chmod(0o755)
    dev = tmp_path / "dev.py"
    dev.write_text(DEV)
    log, state = tmp_path / "calls.jsonl", tmp_path / "state"
    state.write_text("running")
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "FAKE_DOCKER_LOG": str(log),
        "FAKE_DOCKER_STATE": str(state),
        "ENTRYPOINT_LOG_FORMAT": "json",
    }
    return World(tmp_path, env, log, state, dev)


def handoff(
    entrypoint_argv: list[str], world: World, *dev_args: str, options: tuple[str, ...] = ()
) -> list[str]:
    return [
        *entrypoint_argv, "handoff", *options, "--", sys.executable, str(world.dev), *dev_args,
    ]  # fmt: skip


def run(argv: list[str], world: World) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=world.env, capture_output=True, text=True, timeout=60)


def log_events(stderr: str) -> list[dict[str, object]]:
    events = []
    for line in stderr.splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[str]]]:
    processes: list[subprocess.Popen[str]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


def test_stops_before_and_starts_after(entrypoint_argv: list[str], world: World) -> None:
    done = run(handoff(entrypoint_argv, world, "exit", "0"), world)
    assert done.returncode == 0, done.stderr
    assert world.timeline() == ["docker ps", "docker stop", "dev start", "dev end", "docker start"]
    calls = world.docker_calls()
    assert calls[0] == ["compose", "ps", "--status", "running", "-q", "--", "worker"]
    assert calls[1] == ["compose", "stop", "--", "worker"]
    assert calls[2] == ["compose", "start", "--", "worker"]
    events = [e["event"] for e in log_events(done.stderr)]
    assert events == ["handoff_paused", "handoff_resumed"]
    assert log_events(done.stderr)[0]["containers"] == 2


def test_compose_files_project_and_service(entrypoint_argv: list[str], world: World) -> None:
    options = ("--service", "jobs", "-f", "compose.yaml", "-f", "dev.yaml", "-p", "shop")
    done = run(handoff(entrypoint_argv, world, "exit", "0", options=options), world)
    assert done.returncode == 0, done.stderr
    prefix = ["compose", "-f", "compose.yaml", "-f", "dev.yaml", "-p", "shop"]
    assert world.docker_calls() == [
        [*prefix, "ps", "--status", "running", "-q", "--", "jobs"],
        [*prefix, "stop", "--", "jobs"],
        [*prefix, "start", "--", "jobs"],
    ]


def test_environment_variables(entrypoint_argv: list[str], world: World) -> None:
    world.env |= {
        "ENTRYPOINT_HANDOFF_SERVICE": "queue",
        "ENTRYPOINT_HANDOFF_COMPOSE_FILE": "stack.yaml",
        "COMPOSE_PROJECT_NAME": "acme",
    }
    done = run(handoff(entrypoint_argv, world, "exit", "0"), world)
    assert done.returncode == 0, done.stderr
    assert world.docker_calls()[1] == [
        "compose", "-f", "stack.yaml", "-p", "acme", "stop", "--", "queue",
    ]  # fmt: skip


@pytest.mark.parametrize("service", ["-a", "--all", "", "wor ker", "a;b", "x\ny"])
def test_a_service_name_that_is_not_one_is_refused(
    entrypoint_argv: list[str], world: World, service: str
) -> None:
    done = run(handoff(entrypoint_argv, world, "exit", "0", options=("--service", service)), world)
    assert done.returncode == 64, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "not a compose service name" in done.stderr
    assert world.events() == []  # nothing ran: neither docker nor the command


def test_a_service_the_project_does_not_have_is_78_naming_those_it_has(
    entrypoint_argv: list[str], world: World
) -> None:
    world.env["FAKE_DOCKER_SERVICES"] = "web worker scheduler"
    done = run(handoff(entrypoint_argv, world, "exit", "0", options=("--service", "wokrer")), world)
    assert done.returncode == 78, done.stderr
    assert "'wokrer'" in done.stderr
    assert "web, worker, scheduler" in done.stderr
    assert world.timeline() == []  # the dev command did not run


def test_not_started_when_it_was_not_running(entrypoint_argv: list[str], world: World) -> None:
    world.stopped()
    done = run(handoff(entrypoint_argv, world, "exit", "0"), world)
    assert done.returncode == 0, done.stderr
    assert world.timeline() == ["docker ps", "dev start", "dev end"]
    (event,) = log_events(done.stderr)
    assert event["event"] == "handoff_skipped"
    assert event["reason"] == "the service is not running"


def test_started_after_the_command_fails(entrypoint_argv: list[str], world: World) -> None:
    done = run(handoff(entrypoint_argv, world, "exit", "3"), world)
    assert done.returncode == 3
    assert world.timeline()[-2:] == ["dev end", "docker start"]
    assert world.state.read_text() == "running"


def test_started_after_a_command_that_cannot_start(
    entrypoint_argv: list[str], world: World
) -> None:
    argv = [*entrypoint_argv, "handoff", "--", "no-such-dev-command-here"]
    done = run(argv, world)
    assert done.returncode == 127
    assert "command not found: no-such-dev-command-here" in done.stderr
    assert world.timeline() == ["docker ps", "docker stop", "docker start"]


def test_started_after_term_which_is_forwarded(
    entrypoint_argv: list[str], world: World, started: list[subprocess.Popen[str]]
) -> None:
    process = subprocess.Popen(
        handoff(entrypoint_argv, world), env=world.env, stderr=subprocess.PIPE, text=True
    )
    started.append(process)
    assert wait_until(lambda: "dev start" in world.timeline(), 20)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=20)
    assert process.returncode == 128 + signal.SIGTERM
    assert world.timeline()[-3:] == ["dev start", "dev signal TERM", "docker start"]
    events = [e["event"] for e in log_events(stderr)]
    assert events == ["handoff_paused", "signal_forwarded", "handoff_resumed"]


def test_other_signals_are_forwarded_and_the_status_passes_through(
    entrypoint_argv: list[str], world: World, started: list[subprocess.Popen[str]]
) -> None:
    world.env["DEV_EXIT_ON"] = "HUP"
    process = subprocess.Popen(handoff(entrypoint_argv, world), env=world.env, text=True)
    started.append(process)
    assert wait_until(lambda: "dev start" in world.timeline(), 20)
    process.send_signal(signal.SIGUSR1)
    assert wait_until(lambda: "dev signal USR1" in world.timeline(), 10)
    process.send_signal(signal.SIGHUP)
    process.wait(20)
    assert process.returncode == 128 + signal.SIGHUP
    assert world.timeline()[-4:] == [
        "dev start",
        "dev signal USR1",
        "dev signal HUP",
        "docker start",
    ]


def test_sigint_sent_to_the_entrypoint_alone_is_forwarded(
    entrypoint_argv: list[str], world: World, started: list[subprocess.Popen[str]]
) -> None:
    process = subprocess.Popen(
        handoff(entrypoint_argv, world), env=world.env, text=True, start_new_session=True
    )
    started.append(process)
    assert wait_until(lambda: "dev start" in world.timeline(), 20)
    os.kill(process.pid, signal.SIGINT)
    process.wait(20)
    assert process.returncode == 128 + signal.SIGINT
    assert world.timeline()[-3:] == ["dev start", "dev signal INT", "docker start"]


def test_ctrl_c_in_a_terminal_reaches_the_command_once_and_resumes(
    entrypoint_argv: list[str], world: World
) -> None:
    """^C typed in a terminal: the tty sends SIGINT to the foreground group, once."""
    world.env["DEV_EXIT_ON"] = "TERM"  # so that a second INT would be seen, not fatal
    master, slave = pty.openpty()

    def take_terminal() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    process = subprocess.Popen(
        handoff(entrypoint_argv, world),
        env=world.env,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
        preexec_fn=take_terminal,  # noqa: PLW1509 - the test has no threads that fork
    )
    os.close(slave)
    try:
        assert wait_until(lambda: "dev start" in world.timeline(), 20)
        assert next(e for e in world.events() if e.get("dev") == "start")["tty"] is True
        os.write(master, b"\x03")  # Ctrl+C
        assert wait_until(lambda: "dev signal INT" in world.timeline(), 10)
        # A forwarded duplicate would have been sent before this TERM, so logged first.
        process.send_signal(signal.SIGTERM)
        process.wait(20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        os.close(master)
    assert process.returncode == 128 + signal.SIGTERM
    assert world.timeline() == [
        "docker ps", "docker stop", "dev start",
        "dev signal INT", "dev signal TERM", "docker start",
    ]  # fmt: skip


def test_ctrl_c_ending_the_command_resumes_the_service(
    entrypoint_argv: list[str], world: World
) -> None:
    master, slave = pty.openpty()

    def take_terminal() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    process = subprocess.Popen(
        handoff(entrypoint_argv, world),
        env=world.env,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
        preexec_fn=take_terminal,  # noqa: PLW1509 - the test has no threads that fork
    )
    os.close(slave)
    try:
        assert wait_until(lambda: "dev start" in world.timeline(), 20)
        os.write(master, b"\x03")
        process.wait(20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        os.close(master)
    assert process.returncode == 128 + signal.SIGINT
    assert world.timeline()[-3:] == ["dev start", "dev signal INT", "docker start"]
    assert world.state.read_text() == "running"


def test_term_while_the_service_is_being_stopped_cancels_the_run(
    entrypoint_argv: list[str], world: World, started: list[subprocess.Popen[str]]
) -> None:
    release = world.tmp / "stop-may-finish"
    world.env["FAKE_DOCKER_STOP_WAIT"] = str(release)
    process = subprocess.Popen(handoff(entrypoint_argv, world), env=world.env, text=True)
    started.append(process)
    assert wait_until(lambda: "docker stop" in world.timeline(), 20)
    process.send_signal(signal.SIGTERM)
    release.write_text("")
    process.wait(20)
    assert process.returncode == 128 + signal.SIGTERM
    assert world.timeline() == ["docker ps", "docker stop", "docker start"]


def test_without_docker_the_command_still_runs(
    entrypoint_argv: list[str], world: World, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    world.env["PATH"] = str(empty)
    done = run(handoff(entrypoint_argv, world, "exit", "5"), world)
    assert done.returncode == 5
    assert world.timeline() == ["dev start", "dev end"]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1
    (event,) = log_events(done.stderr)
    assert event["event"] == "handoff_skipped"
    assert event["reason"] == "docker not found on PATH"


def test_daemon_down_the_command_still_runs_and_nothing_is_started(
    entrypoint_argv: list[str], world: World
) -> None:
    world.env["FAKE_DOCKER_DOWN"] = "1"
    done = run(handoff(entrypoint_argv, world, "exit", "0"), world)
    assert done.returncode == 0
    assert world.timeline() == ["docker ps", "docker version", "dev start", "dev end"]
    (event,) = log_events(done.stderr)
    assert event["event"] == "handoff_skipped"
    assert str(event["reason"]).startswith("Cannot connect to the Docker daemon")


def test_compose_missing_is_said_in_one_line(entrypoint_argv: list[str], world: World) -> None:
    world.env["FAKE_DOCKER_NO_COMPOSE"] = "1"
    done = run(handoff(entrypoint_argv, world, "exit", "0"), world)
    assert done.returncode == 0
    (event,) = log_events(done.stderr)
    assert event["reason"] == (
        "docker compose is not available: docker: unknown command: docker compose"
    )
    assert world.timeline() == ["docker ps", "docker version", "dev start", "dev end"]


def test_a_failed_stop_still_runs_the_command_and_starts_again(
    entrypoint_argv: list[str], world: World
) -> None:
    world.env["FAKE_DOCKER_STOP_FAILS"] = "1"
    done = run(handoff(entrypoint_argv, world, "exit", "0"), world)
    assert done.returncode == 0
    assert world.timeline() == ["docker ps", "docker stop", "dev start", "dev end", "docker start"]
    assert log_events(done.stderr)[0]["reason"] == (
        "cannot stop: Error response from daemon: cannot stop container"
    )


def test_the_command_keeps_stdin_and_the_working_directory(
    entrypoint_argv: list[str], world: World, tmp_path: Path
) -> None:
    code = "import os, sys; print(os.getcwd(), sys.stdin.read().strip())"
    argv = [*entrypoint_argv, "handoff", "--", sys.executable, "-c", code]
    env = {**world.env, "PYTHONPATH": os.getcwd()}
    done = subprocess.run(
        argv, env=env, cwd=tmp_path, input="from stdin", capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{tmp_path} from stdin"


def test_no_command_is_a_usage_error(entrypoint_argv: list[str], world: World) -> None:
    done = run([*entrypoint_argv, "handoff"], world)
    assert done.returncode == 64
    assert world.docker_calls() == []


# -- pure parts ------------------------------------------------------------------


def test_compose_argv() -> None:
    assert Compose("docker").argv("ps") == ["docker", "compose", "ps"]
    assert Compose("/usr/bin/docker", ("a.yaml", "b.yaml"), "p").argv("stop", "w") == [
        "/usr/bin/docker", "compose", "-f", "a.yaml", "-f", "b.yaml", "-p", "p", "stop", "w",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("signum", "from_kernel", "foreground", "forward"),
    [
        (signal.SIGINT, True, True, False),  # ^C: the terminal told the command already
        (signal.SIGINT, False, True, True),  # kill -INT <entrypoint>
        (signal.SIGTERM, False, False, True),
        (signal.SIGHUP, True, False, False),  # the terminal hung up on the whole group
        (signal.SIGINT, None, True, False),  # no siginfo: foreground job, taken as ^C
        (signal.SIGINT, None, False, True),  # no siginfo, not the foreground job
        (signal.SIGTERM, None, True, True),  # a terminal never sends TERM
    ],
)
def test_should_forward(
    signum: int, from_kernel: bool | None, foreground: bool, forward: bool
) -> None:
    assert should_forward(signum, from_kernel=from_kernel, foreground=foreground) is forward
