from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from hypothesis import settings

# Properties are about values, not speed: on a loaded 2-core machine an example
# may take longer than hypothesis' default 200 ms deadline.
settings.register_profile("entrypoint", deadline=None)
settings.load_profile("entrypoint")


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test gets its own state file, and no ENTRYPOINT_/MODE leaks in from outside."""
    for name in list(os.environ):
        if name.startswith("ENTRYPOINT_") or name in ("MODE", "QUEUE_URL", "QUEUE_CONNECTION"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ENTRYPOINT_STATE_FILE", str(tmp_path / "state.json"))


@pytest.fixture
def entrypoint_argv() -> list[str]:
    """How to run the entrypoint as a separate process."""
    return [sys.executable, "-m", "entrypoint"]
