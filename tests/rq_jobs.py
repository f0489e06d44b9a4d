"""Jobs for the RQ worker tests (imported by `rq worker` through PYTHONPATH)."""

from __future__ import annotations

import time
from pathlib import Path


def slow(path: str, seconds: float) -> str:
    Path(path + ".started").touch()
    time.sleep(seconds)
    Path(path + ".done").touch()
    return path
