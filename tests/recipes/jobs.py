"""What every recipe's job does: mark its start, work, mark its end (files beside PATH)."""

from __future__ import annotations

import time
from pathlib import Path


def begin(path: str) -> None:
    Path(path + ".started").touch()


def end(path: str) -> None:
    Path(path + ".done").touch()


def work(path: str, seconds: float) -> str:
    begin(path)
    time.sleep(seconds)
    end(path)
    return path
