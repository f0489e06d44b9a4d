"""Static checks of the container files: no engine needed, only the linters."""

from __future__ import annotations

import json
import re
import shutil

import yaml

from tests.container.conftest import ROOT, compose_cli, run, tool

DOCKERFILE = ROOT / "docker" / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yaml"
STACK = ROOT / "docker-stack.yaml"
EXAMPLES = ROOT / "docker" / "examples"


def test_hadolint_passes_on_the_dockerfiles() -> None:
    hadolint = tool("hadolint")
    dockerfiles = [
        DOCKERFILE,
        *sorted((ROOT / "docker" / "standins").glob("*.Dockerfile")),
        *sorted(EXAMPLES.glob("*/Dockerfile")),
    ]
    for dockerfile in dockerfiles:
        proc = run(hadolint, str(dockerfile), check=False)
        assert proc.returncode == 0, f"{dockerfile.name}:\n{proc.stdout}{proc.stderr}"


def test_docker_compose_is_a_command() -> None:
    # The README writes `docker compose ...`: Compose must be the CLI's plugin.
    proc = run(*compose_cli(), "version")
    assert "Docker Compose version" in proc.stdout


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
            assert _seconds(service["stop_grace_period"]) > int(timeout), name
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
    # The bundle: an image holding /opt/entrypoint alone; the demo stays the default target.
    assert re.search(
        r"^FROM scratch AS bundle\nCOPY --from=bundle-build /opt/entrypoint /opt/entrypoint$",
        text,
        re.MULTILINE,
    )
    assert re.findall(r"^FROM .*", text, re.MULTILINE)[-1] == "FROM ${BASE} AS demo"
    for example in EXAMPLES.glob("*/Dockerfile"):
        body = example.read_text()
        assert "COPY --from=entrypoint /opt/entrypoint /opt/entrypoint" in body, example
        assert 'ENTRYPOINT ["/opt/entrypoint/entrypoint", "run", "--"]' in body, example
        assert 'CMD ["/opt/entrypoint/entrypoint", "health"]' in body, example


def _seconds(duration: str) -> int:
    match = re.fullmatch(r"(\d+)s", duration)
    assert match, duration
    return int(match[1])


def test_stack_file_is_what_docker_stack_deploy_takes() -> None:
    stack = yaml.safe_load(STACK.read_text())
    # Debian's 20.10 CLI wants a version; Swarm rejects profiles, a name, depends_on conditions.
    assert stack["version"].startswith("3.")
    assert "name" not in stack
    for name, service in stack["services"].items():
        assert "profiles" not in service, name
        assert "depends_on" not in service, name
        assert "build" not in service, name
        # Swarm drops the short form without a word; the long form is a mount.
        assert "tmpfs" not in service, name
        timeout = service.get("environment", {}).get("ENTRYPOINT_STOP_TIMEOUT")
        if timeout is not None:
            assert _seconds(service["stop_grace_period"]) > int(timeout), name
            update = service["deploy"]["update_config"]
            assert (update["order"], update["parallelism"]) == ("stop-first", 1), name
        if name != "redis":
            assert service["read_only"] is True, name
            assert service["cap_drop"] == ["ALL"], name
    assert stack["services"]["scheduler"]["deploy"]["replicas"] == 2
    # A CLI that has `docker stack config` (20.10's has not) merges it without a complaint.
    docker = shutil.which("docker")
    if docker is not None and run(docker, "stack", "config", "--help", check=False).returncode == 0:
        run(docker, "stack", "config", "-c", str(STACK))
