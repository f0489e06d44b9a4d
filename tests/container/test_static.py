"""Static checks of the container files: no engine needed, only the linters."""

from __future__ import annotations

import json
import re

from tests.container.conftest import ROOT, run, tool

DOCKERFILE = ROOT / "docker" / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yaml"


def test_hadolint_passes_on_the_dockerfiles() -> None:
    hadolint = tool("hadolint")
    for dockerfile in (DOCKERFILE, *sorted((ROOT / "docker" / "standins").glob("*.Dockerfile"))):
        proc = run(hadolint, str(dockerfile), check=False)
        assert proc.returncode == 0, f"{dockerfile.name}:\n{proc.stdout}{proc.stderr}"


def test_compose_file_is_valid_for_compose() -> None:
    for profile in ("app", "worker", "postgres"):
        run(tool("docker-compose"), "-f", str(COMPOSE), "--profile", profile, "config", "-q")


def test_compose_file_matches_the_compose_spec_schema() -> None:
    run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE))


def test_compose_publishes_on_loopback_only_and_budgets_the_grace() -> None:
    config = json.loads(
        run(
            tool("docker-compose"), "-f", str(COMPOSE),
            "--profile", "app", "--profile", "postgres", "config", "--format", "json",
        ).stdout
    )  # fmt: skip
    busy = {5432, 3306, 6379, 5672, 4222}
    for name, service in config["services"].items():
        for port in service.get("ports", []):
            assert port["host_ip"] == "127.0.0.1", (name, port)
            assert int(port["published"]) not in busy, (name, port)
        assert "no-new-privileges:true" in service.get("security_opt", []), name
        assert service.get("restart") == "unless-stopped", name
        timeout = service.get("environment", {}).get("ENTRYPOINT_STOP_TIMEOUT")
        if timeout is not None:
            grace = service["stop_grace_period"]
            match = re.fullmatch(r"(\d+)s", grace)
            assert match, grace
            assert int(match[1]) > int(timeout), (name, grace, timeout)
    assert config["services"]["worker"]["deploy"]["replicas"] == 3
    assert "ALL" in config["services"]["worker"]["cap_drop"]
    assert config["services"]["worker"]["read_only"] is True


def test_dockerfile_keeps_the_contract() -> None:
    text = DOCKERFILE.read_text()
    assert 'ENTRYPOINT ["entrypoint", "run", "--"]' in text
    assert "HEALTHCHECK" in text
    assert 'CMD ["entrypoint", "health"]' in text
    assert re.search(r"^USER (?!root|0\b)", text, re.MULTILINE)
    assert "<<" not in text  # no heredocs: the legacy builder has none
    assert not text.startswith("# syntax=")
