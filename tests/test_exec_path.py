"""Web mode's exec: os.execvp's answers, and no import on the way that web mode never uses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

EXEC = "import os, sys\n{call}(sys.argv[1], sys.argv[1:])\n"
OURS = EXEC.format(call="__import__('entrypoint.runtime.execute').runtime.execute.execvp")
STDLIB = EXEC.format(call="os.execvp")


def script(path: Path, text: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    script(tmp_path / "noexec" / "tool", "#!/bin/sh\necho noexec\n", 0o644)
    script(tmp_path / "ok" / "tool", '#!/bin/sh\necho ok "$@"\n', 0o755)
    script(tmp_path / "garbage" / "tool", "\x7fELF not really\n", 0o755)
    (tmp_path / "file").write_text("")
    return tmp_path


@pytest.mark.parametrize(
    ("path", "argv"),
    [
        ("{t}/ok", ["tool", "a b"]),
        ("{t}/noexec:{t}/ok", ["tool"]),  # EACCES, then found further on
        ("{t}/noexec", ["tool"]),  # only EACCES: that one
        ("{t}/missing:{t}/file:{t}/ok", ["tool"]),  # ENOENT and ENOTDIR are skipped
        ("{t}/garbage:{t}/ok", ["tool"]),  # ENOEXEC
        ("{t}/missing", ["tool"]),
        ("", ["tool"]),  # PATH empty: the current directory
        (None, ["sh", "-c", "echo defpath"]),  # PATH unset: os.defpath
        ("{t}/ok", ["{t}/ok/tool", "direct"]),  # a slash: no search
        ("{t}/ok", ["{t}/noexec/tool"]),
        ("{t}/ok", ["./tool"]),
    ],
)
def test_execvp_answers_as_os_execvp(tree: Path, path: str | None, argv: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PATH"}
    if path is not None:
        env["PATH"] = path.format(t=tree)
    env["PYTHONPATH"] = str(ROOT)
    argv = [word.format(t=tree) for word in argv]

    def outcome(code: str) -> tuple[int, str, str]:
        result = subprocess.run(
            [sys.executable, "-c", code, *argv],
            cwd=tree / "ok",
            env=env,
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
        last = result.stderr.strip().splitlines()[-1:] or [""]
        return result.returncode, result.stdout, last[0].split(":")[0]

    assert outcome(OURS) == outcome(STDLIB)


def test_web_mode_imports_nothing_of_the_standard_library_before_its_exec(tmp_path: Path) -> None:
    """Run the start for real, up to the exec: warnings (os.execvp) or _socket would show here."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ENTRYPOINT_", "QUEUE_", "REDIS_", "DB_", "MODE"))
    }
    env |= {
        "MODE": "web",
        "QUEUE_CONNECTION": "redis",
        "REDIS_HOST": "127.0.0.1",
        "REDIS_PORT": "6379",
        "WORKER_CMD": "php artisan queue:work",
        "ENTRYPOINT_STATE_FILE": str(tmp_path / "state.json"),
        "PYTHONPATH": str(ROOT),
    }

    def imported(*argv: str) -> set[str]:
        result = subprocess.run(
            # -S: no site, whose path hooks (an editable install's) import things of their own
            [sys.executable, "-S", "-X", "importtime", *argv],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        )
        return {
            line.rsplit("|", 1)[1].strip()
            for line in result.stderr.splitlines()
            if line.startswith("import time:") and "|" in line
        }

    start = "import sys; from entrypoint.boot import main; sys.argv[0] = 'entrypoint'; main()"
    # `import os`: what the interpreter's own site would have imported anyway.
    added = imported("-c", start, "run", "--", "true") - imported("-c", "import os")
    others = {m for m in added if not m.startswith("entrypoint")} - {"__future__"}
    assert sorted(others) == []
