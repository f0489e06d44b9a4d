"""The shell commands README.md and docs/ show, as a reader would type them."""

from __future__ import annotations

import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SHELLS = {"sh", "bash", "shell", "console"}


def shell_lines(path: Path) -> list[tuple[int, str]]:
    """The lines of the shell blocks of a Markdown file: continuations joined, prompts cut."""
    found: list[tuple[int, str]] = []
    fence: str | None = None
    pending: tuple[int, str] | None = None
    for index, line in enumerate(path.read_text().splitlines(), 1):
        if line.lstrip().startswith("```"):
            fence = line.strip()[3:].strip() if fence is None else None
            continue
        if fence not in SHELLS:
            continue
        number, text = index, line.strip()
        if pending is not None:
            number, text = pending[0], pending[1] + " " + text
            pending = None
        elif text.startswith("$ "):
            text = text[2:]
        elif fence == "console":
            continue  # output, not a command
        if text.endswith("\\"):
            pending = (number, text[:-1].rstrip())
            continue
        found.append((number, text))
    return found


def shell_commands(path: Path) -> list[tuple[int, list[str]]]:
    """The one-line commands of `path`'s shell blocks, split into words as sh would."""
    commands = []
    for number, text in shell_lines(path):
        try:
            words = shlex.split(text, comments=True)
        except ValueError:
            continue  # a quote over several lines: not a one-line command
        if words:
            commands.append((number, words))
    return commands
