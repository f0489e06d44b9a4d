"""docs/liveness.md keeps its promises: the session runs, the manifest validates, names exist."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import ROOT, base_env
from tests.servers import missing

PAGE = ROOT / "docs" / "liveness.md"
RECIPES = ROOT / "docs" / "recipes.md"


def blocks(language: str, text: str | None = None) -> list[str]:
    text = PAGE.read_text() if text is None else text
    return re.findall(rf"^```{language}\n(.*?)^```$", text, re.S | re.M)


def test_the_try_it_session_runs(tmp_path: Path) -> None:
    if shutil.which("systemd-notify") is None:
        missing("systemd-notify is not installed (Debian package systemd)")
    session = next(b for b in blocks("sh") if "entrypoint health --ready" in b)
    session = session.replace("/tmp/entrypoint-try.json", str(tmp_path / "state.json"))
    env = base_env()
    env.pop("ENTRYPOINT_LOG_FORMAT")
    result = subprocess.run(
        ["bash", "-e", "-c", session],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "ready, heartbeat" in lines[0], lines
    assert "status 'up'" in lines[1], lines
    assert '"ready": true' in result.stdout


def test_the_kubernetes_example_validates_and_probes_as_it_says() -> None:
    from tests.test_kubernetes_manifests import KUBERNETES_VERSIONS, schema_problems

    manifest = next(b for b in blocks("yaml") if b.startswith("# worker-liveness.yaml"))
    doc = yaml.safe_load(manifest)
    for version in KUBERNETES_VERSIONS:
        assert schema_problems(doc, version) == []
    container = doc["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["exec"]["command"] == ["entrypoint", "health"]
    assert container["readinessProbe"]["exec"]["command"] == ["entrypoint", "health", "--ready"]
    env = {e["name"]: e["value"] for e in container["env"]}
    grace = doc["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > float(env["ENTRYPOINT_STOP_TIMEOUT"])


@pytest.mark.parametrize("page", [PAGE, RECIPES], ids=lambda p: p.name)
def test_every_variable_named_is_one_the_entrypoint_knows(page: Path) -> None:
    from entrypoint.plan.settings import KNOWN_VARIABLES

    named = set(re.findall(r"\bENTRYPOINT_[A-Z_]+[A-Z]\b", page.read_text()))
    assert named
    assert named - set(KNOWN_VARIABLES) == set()


def test_the_healthcheck_lines_name_real_commands() -> None:
    lines = [b for b in blocks("dockerfile") if "HEALTHCHECK" in b]
    assert lines
    for line in lines:
        command = re.search(r"CMD (\[.*\])", line)
        assert command is not None
        argv = yaml.safe_load(command.group(1))
        assert argv[0] == "entrypoint"
        result = subprocess.run(
            [sys.executable, "-m", "entrypoint", *argv[1:], "--help"],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, result.stderr
