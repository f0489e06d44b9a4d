"""The commands README.md and docs/ show, run as written where they can run here.

The README's first command runs the demo (in a copy of the repository's
tracked files, as a fresh clone has them); every `entrypoint explain`,
`check`, `health` and `status` line in a shell block of the docs runs with
its own variables and answers as the contract says: a code the contract
gives, no traceback, and a failure in one line. The `docker ...` ones run
in tests/container/test_documented.py; `entrypoint handoff` needs a Compose
project or a store and runs in test_handoff.py and test_handoff_store.py.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.docs_helpers import DOCS, shell_commands, shell_lines
from tests.helpers import ROOT, Running, base_env
from tests.probe_helpers import accepts, free_port

ASSIGNMENT = re.compile(r"[A-Z_][A-Z0-9_]*=")
# What each subcommand may answer (CONTRACT.md: exit codes).
ANSWERS = {
    "explain": {0, 64, 78},
    "check": {0, 64, 69, 78},
    "health": {0, 1},
    "status": {0, 1},
}


@dataclass(frozen=True)
class Documented:
    where: str  # file:line
    env: dict[str, str]
    argv: list[str]

    def __str__(self) -> str:
        return self.where


def documented() -> list[Documented]:
    commands = []
    for path in DOCS:
        for number, words in shell_commands(path):
            env = {}
            while words and ASSIGNMENT.match(words[0]):
                name, _, value = words.pop(0).partition("=")
                env[name] = value
            if len(words) >= 2 and words[0] == "entrypoint":
                where = f"{path.relative_to(ROOT)}:{number}"
                commands.append(Documented(where, env, words))
    return commands


ALL = documented()
COMMANDS = [c for c in ALL if c.argv[1] in ANSWERS]
# Run elsewhere: `run` by the README's first command below, `handoff` with a real
# Compose project or store (test_handoff.py, test_handoff_store.py).
ELSEWHERE = {"run", "handoff"}


def test_the_docs_show_only_commands_the_entrypoint_has() -> None:
    unknown = [f"{c}: {shlex.join(c.argv)}" for c in ALL if c.argv[1] not in {*ANSWERS, *ELSEWHERE}]
    assert not unknown
    # The extraction itself can fail: these are in the docs today.
    shown = {c.argv[1] for c in ALL}
    assert {"check", "health", "status", "run", "handoff"} <= shown, shown


@pytest.mark.parametrize("command", COMMANDS, ids=str)
def test_a_documented_entrypoint_command_answers_as_the_contract_says(
    tmp_path: Path, command: Documented
) -> None:
    entrypoint = shutil.which("entrypoint", path=os.path.dirname(sys.executable))
    assert entrypoint is not None
    env = base_env(ENTRYPOINT_STATE_FILE=str(tmp_path / "state.json"), **command.env)
    proc = subprocess.run(
        [entrypoint, *command.argv[1:]],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output, output
    assert proc.returncode in ANSWERS[command.argv[1]], (proc.returncode, output)
    if proc.returncode not in (0, 1):
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


# --- the README's first command ------------------------------------------------------


def readme_first_command() -> str:
    ((_, first), *_) = shell_lines(ROOT / "README.md")
    return first


def tracked_copy(into: Path) -> Path:
    """The repository's tracked files (what a clone has), copied into `into`."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=30
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source, target = ROOT / name, into / name
        if source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return into


@pytest.mark.timeout(600)
def test_the_readme_first_command_runs_the_demo_and_ctrl_c_finishes_the_job(
    tmp_path: Path,
) -> None:
    command = readme_first_command()
    assert command == "./docker/demo/run-local", command
    clone = tracked_copy(tmp_path / "clone")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENTRYPOINT_", "VIRTUAL_ENV"))}
    env.update(PORT=str(port), PYTHON=sys.executable, ENTRYPOINT_LOG_FORMAT="json")
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if p != os.path.dirname(sys.executable)
    )
    with Running(shlex.split(command), env, cwd=clone, start_new_session=True) as run:
        # The install (once) and the web app; then the worker takes the first of its five jobs.
        run.wait_stdout(rf"Web app:\s+http://127\.0\.0\.1:{port}", timeout=480)
        assert accepts(port)
        started = run.wait_stderr(r"job_started id=(\S+)", timeout=60)[0]
        # Ctrl+C: the terminal's SIGINT to the whole foreground process group.
        os.killpg(run.pid, signal.SIGINT)
        assert run.wait(60) == 0
    job = started.group(1)
    finished = [line for line in run.stderr if f"job_finished id={job} " in line]
    assert finished, "\n".join(run.stderr[-30:])
    assert run.events("stop_started")
    (stopped,) = run.events("stop_finished")
    assert stopped["exit_code"] == 0
    assert not accepts(port), "the web app outlived run-local"
    assert (clone / "demo-data" / "queue.sqlite3").exists()
