"""The bundle (/opt/entrypoint, target bundle) in images without Python: PHP and Node.

The examples in docker/examples/ are built by .ci/docker-up with the bundle
copied in: a PHP worker loop with a pcntl SIGTERM handler, and a BullMQ worker
against a Redis container. Both run under MODE=worker as real users would run
them: PID 1 is the bundle, `docker stop` lets the job in flight finish, and the
HEALTHCHECK goes through the bundle's `health`.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from types import ModuleType

import pytest

from tests.container.conftest import (
    BUNDLE_IMAGE,
    NODE_IMAGE,
    PHP_IMAGE,
    ROOT,
    Docker,
    child_pid,
    exec_in,
    inspect,
    logs,
    pid1_argv,
    require_image,
    run,
    wait_until,
)

ENTRYPOINT = "/opt/entrypoint/entrypoint"


def rthook() -> ModuleType:
    """docker/bundle/rthook_environ.py, the bundle's runtime hook, as a module."""
    path = ROOT / "docker" / "bundle" / "rthook_environ.py"
    spec = importlib.util.spec_from_file_location("rthook_environ", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_runtime_hook_gives_children_the_environment_the_bundle_was_given() -> None:
    restore = rthook().restore_environment
    env = {
        "LD_LIBRARY_PATH": "/opt/entrypoint/_internal",
        "_PYI_ARCHIVE_FILE": "/opt/entrypoint/entrypoint",
        "_PYI_PARENT_PROCESS_LEVEL": "1",
        "MODE": "worker",
    }
    restore(env)
    assert env == {"MODE": "worker"}
    env = {
        "LD_LIBRARY_PATH": "/opt/entrypoint/_internal:/usr/local/lib",
        "LD_LIBRARY_PATH_ORIG": "/usr/local/lib",
        "PYI_NOT_OURS": "kept",
    }
    restore(env)
    assert env == {"LD_LIBRARY_PATH": "/usr/local/lib", "PYI_NOT_OURS": "kept"}


@pytest.mark.docker
def test_bundle_image_holds_only_the_bundle_and_cannot_run_without_glibc(
    docker: Docker,
) -> None:
    bundle = require_image(BUNDLE_IMAGE)
    layers = inspect(bundle, "{{len .RootFS.Layers}}")
    assert layers == "1"
    created = docker.prefix + "-files"
    run("docker", "create", "--name", created, bundle, ENTRYPOINT)
    docker.containers.append(created)
    with subprocess.Popen(["docker", "export", created], stdout=subprocess.PIPE) as export:
        assert export.stdout is not None
        with tarfile.open(fileobj=export.stdout, mode="r|") as tar:
            names = [member.name.rstrip("/") for member in tar]
    assert export.returncode == 0
    # What the engine adds to every container's filesystem, and the bundle.
    engine_made = re.compile(
        r"^(\.dockerenv|dev|dev/.*|etc|etc/(hostname|hosts|resolv\.conf|mtab)|proc|sys)$"
    )
    ours = [name for name in names if not engine_made.match(name)]
    assert all(name == "opt" or name.startswith("opt/entrypoint") for name in ours), ours
    assert "opt/entrypoint/entrypoint" in ours
    assert "opt/entrypoint/_internal/libpython3.11.so.1.0" in ours
    # An image without glibc (scratch here, Alpine's musl alike) has no loader
    # for it: the kernel's ENOENT, which docs/bundle.md quotes.
    proc = run("docker", "run", "--rm", bundle, ENTRYPOINT, "--version", check=False)
    assert proc.returncode != 0
    assert "no such file or directory" in proc.stderr, proc.stderr


@pytest.mark.docker
def test_php_worker_under_the_bundle_stops_gracefully_and_is_healthy(docker: Docker) -> None:
    image = require_image(PHP_IMAGE)
    worker = docker.start(
        "-e", "MODE=worker", "-e", "JOB_SECONDS=2",
        "--health-interval=1s", "--health-start-period=20s",
        image, name="php",
    )  # fmt: skip
    wait_until(lambda: "job_started n=1" in logs(worker), 30, "the PHP worker's first job")
    assert pid1_argv(worker) == [ENTRYPOINT, "run", "--", "php", "/app/worker.php"]
    # No Python in the image: the bundle brings its own.
    assert exec_in(worker, "sh", "-c", "command -v python3 python || echo none").stdout == "none\n"
    # The worker sees the container's environment, not the bundle's libraries.
    environ = exec_in(worker, "cat", f"/proc/{child_pid(worker)}/environ").stdout.split("\0")
    assert "MODE=worker" in environ
    assert not [v for v in environ if v.startswith(("LD_LIBRARY_PATH=", "_PYI_"))], environ
    wait_until(
        lambda: inspect(worker, "{{.State.Health.Status}}") == "healthy",
        30,
        "the HEALTHCHECK (/opt/entrypoint/entrypoint health) to report healthy",
    )
    health = exec_in(worker, ENTRYPOINT, "health")
    assert health.returncode == 0, health.stdout + health.stderr
    assert "child pid" in health.stdout

    # Stop in the middle of a job: it finishes, then the worker exits 0.
    text = logs(worker)
    current = max(int(n) for n in re.findall(r"job_started n=(\d+)", text))
    started = time.monotonic()
    run("docker", "stop", "-t", "30", worker, timeout=60)
    elapsed = time.monotonic() - started
    text = logs(worker)
    assert inspect(worker, "{{.State.ExitCode}}") == "0", text[-3000:]
    assert f"job_finished n={current}" in text
    assert f"job_started n={current + 1}" not in text
    assert "stop_requested signal=15" in text
    assert "stop_escalated" not in text
    assert elapsed < 10, f"docker stop took {elapsed:.1f} s"


@pytest.mark.docker
def test_web_mode_under_the_bundle_execs_the_command(docker: Docker) -> None:
    image = require_image(PHP_IMAGE)
    web = docker.start(
        "-e", "ENTRYPOINT_HEALTH_URL=http://127.0.0.1:8080/",
        image, "php", "-S", "127.0.0.1:8080", "-t", "/app", name="phpweb",
    )  # fmt: skip
    wait_until(
        lambda: exec_in(web, ENTRYPOINT, "health").returncode == 0,
        30,
        "health in web mode (ENTRYPOINT_HEALTH_URL) to answer 0",
    )
    # The entrypoint is gone: the PHP server has its PID.
    assert pid1_argv(web) == ["php", "-S", "127.0.0.1:8080", "-t", "/app"]


@pytest.mark.docker
def test_the_bundles_psycopg_logs_in_over_tls_with_the_interpreters_openssl(
    docker: Docker,
) -> None:
    """psycopg's libpq runs on the OpenSSL the bundle's ssl module loads (one copy, not two)."""
    image = require_image(PHP_IMAGE)
    require_image("postgres:16")
    libs = "/opt/entrypoint/_internal/psycopg_binary.libs"
    links = run(
        "docker", "run", "--rm", "--entrypoint", "sh", image, "-c",
        f"for f in {libs}/libcrypto-* {libs}/libssl-*; do echo \"$f $(readlink $f)\"; done",
    ).stdout.split("\n")  # fmt: skip
    targets = sorted(line.split()[-1] for line in links if line)
    assert targets == ["../libcrypto.so.3", "../libssl.so.3"], links
    network = docker.network()
    # Debian's server with the snakeoil certificate its ssl-cert package makes.
    server = docker.start(
        "--network", network, "-e", "POSTGRES_PASSWORD=Tls-s3cret",
        "postgres:16", "postgres", "-c", "ssl=on", "-c", "log_connections=on",
        "-c", "ssl_cert_file=/etc/ssl/certs/ssl-cert-snakeoil.pem",
        "-c", "ssl_key_file=/etc/ssl/private/ssl-cert-snakeoil.key",
        name="tlspg",
    )  # fmt: skip
    wait_until(
        lambda: run("docker", "exec", server, "pg_isready", "-q", check=False).returncode == 0,
        30,
        "PostgreSQL with TLS to accept connections",
    )

    def check(password: str) -> subprocess.CompletedProcess[str]:
        url = f"postgresql://postgres:{password}@{server}:5432/postgres?sslmode=require"
        return run(
            "docker", "run", "--rm", "--network", network, "--entrypoint", ENTRYPOINT,
            "-e", "MODE=worker", "-e", "WORKER_CMD=true", "-e", f"QUEUE_URL={url}",
            image, "check", check=False,
        )  # fmt: skip

    good = check("Tls-s3cret")
    assert good.returncode == 0, good.stdout + good.stderr
    assert re.search(r"authenticated\s+ok", good.stdout), good.stdout
    assert "SSL enabled (protocol=TLS" in logs(server)  # libpq spoke TLS
    bad = check("wrong")
    assert bad.returncode != 0
    assert "password authentication failed" in bad.stdout + bad.stderr
    assert "wrong" not in bad.stdout + bad.stderr


def _node_jobs(container: str) -> dict[str, dict[str, object]]:
    listed = exec_in(container, "node", "jobs.mjs", "list")
    assert listed.returncode == 0, listed.stderr
    return {str(job["id"]): job for job in json.loads(listed.stdout)}


@pytest.mark.docker
def test_node_bullmq_worker_under_the_bundle_processes_jobs_and_stops_gracefully(
    docker: Docker,
) -> None:
    image = require_image(NODE_IMAGE)
    network = docker.network()
    redis = docker.redis(network)
    worker = docker.start(
        "--network", network, "-e", "MODE=worker", "-e", f"QUEUE_URL=redis://{redis}:6379/0",
        "--health-interval=1s", "--health-start-period=20s",
        image, name="node",
    )  # fmt: skip
    wait_until(lambda: "worker_started" in logs(worker), 30, "the BullMQ worker to start")
    assert pid1_argv(worker)[:3] == [ENTRYPOINT, "run", "--"]
    assert exec_in(worker, "sh", "-c", "command -v python3 python || echo none").stdout == "none\n"
    text = logs(worker)
    assert "dependency_ready" in text  # the bundle probed Redis (PING) before the start
    wait_until(
        lambda: inspect(worker, "{{.State.Health.Status}}") == "healthy",
        30,
        "the HEALTHCHECK (/opt/entrypoint/entrypoint health) to report healthy",
    )

    added = exec_in(worker, "node", "jobs.mjs", "add", "10", "100")
    assert added.returncode == 0, added.stderr
    ids = added.stdout.split()
    assert len(ids) == 10

    def all_completed() -> dict[str, dict[str, object]] | None:
        jobs = _node_jobs(worker)
        return jobs if all(jobs.get(i, {}).get("state") == "completed" for i in ids) else None

    done = wait_until(all_completed, 60, "10 BullMQ jobs to complete")
    assert all(done[i]["attemptsStarted"] == 1 for i in ids), done

    # Stop while a 3 s job runs: worker.close() lets it finish, then exit 0.
    (slow,) = exec_in(worker, "node", "jobs.mjs", "add", "1", "3000").stdout.split()
    wait_until(lambda: f"job_started id={slow}" in logs(worker), 30, "the 3 s job to start")
    started = time.monotonic()
    run("docker", "stop", "-t", "30", worker, timeout=60)
    elapsed = time.monotonic() - started
    text = logs(worker)
    assert inspect(worker, "{{.State.ExitCode}}") == "0", text[-3000:]
    assert f"job_finished id={slow}" in text
    assert "worker_stopped" in text
    assert "stop_escalated" not in text
    assert 1.0 <= elapsed < 15, f"docker stop took {elapsed:.1f} s"
    # The queue says so too (asked from a fresh container of the same image).
    listed = run(
        "docker", "run", "--rm", "--network", network, "--entrypoint", "node",
        "-e", f"QUEUE_URL=redis://{redis}:6379/0", image, "jobs.mjs", "list",
    )  # fmt: skip
    jobs = {str(job["id"]): job for job in json.loads(listed.stdout)}
    assert jobs[slow]["state"] == "completed"
    assert jobs[slow]["attemptsStarted"] == 1


@pytest.mark.docker
def test_bundle_benchmark_runs_and_reports_every_figure(docker: Docker, tmp_path: Path) -> None:
    """A smoke run of benchmarks/bundle.py (its figures are in docs/bundle.md, not asserted)."""
    require_image(BUNDLE_IMAGE)
    spec = importlib.util.spec_from_file_location("bench_bundle", ROOT / "benchmarks" / "bundle.py")
    assert spec is not None
    assert spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    wheel = Path(sys.executable).parent / "entrypoint"
    bundle = bench.extract_bundle(BUNDLE_IMAGE, tmp_path)
    result = bench.measure(bundle, str(wheel), samples=2, rss_rounds=1)
    assert 10 < result["size_mb"] < 100
    for peer in ("bundle", "wheel"):
        assert set(result[peer]) == {"web_fast", "web_full", "health", "rss_mb", "rss_anon_mb"}
        assert result[peer]["rss_mb"] > 0
    assert set(result["ratios"]) == {"web_fast", "web_full", "health", "rss"}
    assert len(result["budgets"]) == 4
    assert "supervisor RSS" in bench.render(result)
