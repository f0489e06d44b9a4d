"""/metrics and `status` of a running entrypoint: a real Prometheus, hostile scrapers.

tests/test_metrics_server.py drives the endpoint on a Loop alone; here it is the
supervisor's own, with its child, its restarts and its stop.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import CHILD, base_env, entrypoint, run_entrypoint, wait_until
from tests.servers import missing, require_server


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return int(sock.getsockname()[1])


def scrape(port: int) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            samples.setdefault(sample.name, {})[labels] = sample.value
    return samples


def metrics_env(port: int, **extra: str) -> dict[str, str]:
    settings = {
        "MODE": "worker",
        "ENTRYPOINT_METRICS_ADDR": f"127.0.0.1:{port}",
        "ENTRYPOINT_STOP_TIMEOUT": "5",
    }
    return base_env(**{**settings, **extra})


def test_a_running_worker_serves_its_metrics(tmp_path: Path) -> None:
    require_server("redis")
    port = free_port()
    runs = tmp_path / "runs"
    env = metrics_env(
        port,
        QUEUE_URL="redis://Zx9Secret@127.0.0.1:6379/0",  # a lone userinfo: never shown
        ENTRYPOINT_BACKOFF_INITIAL="0.05",
        ENTRYPOINT_QUEUE_DEPTH="rq:entrypoint-test-metrics",
    )
    plan = "fail,serve"  # one failure, then it runs
    with entrypoint("run", "--", *CHILD, "--runs", str(runs), "--plan", plan, env=env) as run:
        run.wait_event("metrics_listening")
        run.wait_stdout(r"^ready")
        assert wait_until(lambda: scrape(port)["entrypoint_child_starts_total"][()] == 2, 10)
        samples = scrape(port)
        assert samples["entrypoint_child_up"][()] == 1
        assert samples["entrypoint_child_exits_total"][(("reason", "exit"),)] == 1
        assert samples["entrypoint_child_rss_bytes"][()] > 1_000_000
        (dependency,) = samples["entrypoint_dependency_up"]
        assert dependency == (("dependency", "redis://***@127.0.0.1:6379/0"),)
        depth = samples["entrypoint_queue_depth_up"][(("queue", "rq:entrypoint-test-metrics"),)]
        assert depth == 1
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            assert b"Zx9Secret" not in response.read()
        run.signal(signal.SIGTERM)
        assert run.wait() == 0


def test_status_reads_the_state_and_the_queue_depths_now(tmp_path: Path) -> None:
    require_server("redis")
    queue = f"entrypoint-test-status-{os.getpid()}"
    env = base_env(
        MODE="worker",
        QUEUE_URL="redis://127.0.0.1:6379/0",
        ENTRYPOINT_QUEUE_DEPTH=f"rq:{queue}",
        ENTRYPOINT_STATE_FILE=str(tmp_path / "state.json"),
    )
    from redis import Redis

    client = Redis.from_url("redis://127.0.0.1:6379/0")
    client.rpush(f"rq:queue:{queue}", "a", "b", "c")
    try:
        with entrypoint("run", "--", *CHILD, env=env) as run:
            pid = int(run.wait_stdout(r"^ready \(pid: (\d+)\)")[0].group(1))
            assert wait_until(lambda: run_entrypoint("status", env=env).returncode == 0, 5)
            document = json.loads(run_entrypoint("status", "--json", env=env).stdout)
            keys = {
                "mode", "state", "child_pid", "uptime_s", "restarts", "last_exit_code",
                "last_exit_reason", "ready", "heartbeat_age_s", "leader", "queue_depth",
            }  # fmt: skip
            assert keys <= document.keys()
            assert (document["state"], document["child_pid"]) == ("running", pid)
            assert document["queue_depth"] == {f"rq:{queue}": 3}
            text = run_entrypoint("status", env=env).stdout
            assert f"child pid     {pid}" in text
            assert f"rq:{queue}: 3 ready" in text
            run.signal(signal.SIGTERM)
            assert run.wait() == 0
    finally:
        client.delete(f"rq:queue:{queue}")
        client.close()
    after = run_entrypoint("status", env=env)
    assert after.returncode == 1  # no live supervisor: said, not guessed


def test_hostile_scrapers_stall_neither_signals_nor_the_stop() -> None:
    port = free_port()
    with entrypoint("run", "--", *CHILD, env=metrics_env(port)) as run:
        run.wait_event("metrics_listening")
        pid = int(run.wait_stdout(r"^ready \(pid: (\d+)\)")[0].group(1))
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(300)]
        flood = socket.create_connection(("127.0.0.1", port))
        flood.settimeout(0.2)
        try:
            with contextlib.suppress(OSError):  # cut by the server: what it should do
                flood.sendall(b"GET /metrics HTTP/1.1\r\n" + b"X-Big: " + b"y" * 1_000_000)
            run.signal(signal.SIGUSR1)
            run.wait_stdout(rf"^signal SIGUSR1 \(pid: {pid}\)", timeout=5)
            # Every slot is taken (new scrapers are told 503) until the idle ones'
            # deadlines free them: then scrapes are answered again.
            assert wait_until(lambda: _up(port), 15)
            run.signal(signal.SIGTERM)
            sent = time.monotonic()
            assert run.wait(10) == 0
            assert time.monotonic() - sent < 3
        finally:
            for sock in [*idle, flood]:
                sock.close()


def _up(port: int) -> bool:
    try:
        return scrape(port)["entrypoint_child_up"][()] == 1
    except OSError:
        return False


@pytest.mark.parametrize(("value", "needle"), [
    ("abc", "ENTRYPOINT_METRICS_ADDR"),
    (":0", "outside 1..65535"),
    (":70000", "outside 1..65535"),
    ("[::1:9464", "ENTRYPOINT_METRICS_ADDR"),
    ("host:port", "not a number"),
])  # fmt: skip
def test_a_bad_metrics_address_is_78(value: str, needle: str) -> None:
    result = run_entrypoint("run", "--", "true", env=metrics_env(1, ENTRYPOINT_METRICS_ADDR=value))
    assert result.returncode == 78
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1
    assert needle in lines[0]


def test_a_taken_metrics_port_is_a_warning_and_the_worker_runs() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with entrypoint("run", "--", *CHILD, env=metrics_env(port)) as run:
            warning = run.wait_event("metrics_unavailable")[0]
            assert warning["addr"] == f"127.0.0.1:{port}"
            run.wait_stdout(r"^ready")
            run.signal(signal.SIGTERM)
            assert run.wait() == 0


@pytest.mark.parametrize(("env", "needle"), [
    ({"ENTRYPOINT_QUEUE_DEPTH": "rq", "QUEUE_URL": "redis://r"}, "ENTRYPOINT_QUEUE_DEPTH"),
    ({"ENTRYPOINT_QUEUE_DEPTH": "unknown:q", "QUEUE_URL": "redis://r"}, "ENTRYPOINT_QUEUE_DEPTH"),
    ({"ENTRYPOINT_QUEUE_DEPTH": "rq:default", "QUEUE_CONNECTION": "sqs"}, "not supported"),
    ({"ENTRYPOINT_QUEUE_DEPTH": "rq:default"}, "QUEUE_URL"),
])  # fmt: skip
def test_a_bad_queue_depth_is_one_line_78(env: dict[str, str], needle: str) -> None:
    result = run_entrypoint("run", "--", "true", env=base_env(MODE="worker", **env))
    assert result.returncode == 78, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1
    assert needle in lines[0]


def test_a_real_prometheus_scrapes_a_running_entrypoint(tmp_path: Path) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        missing("prometheus is not installed (apt-get install prometheus)")
        return
    port, web = free_port(), free_port()
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, scrape_timeout: 1s}\n"
        "scrape_configs:\n"
        f"  - {{job_name: worker, static_configs: [{{targets: ['127.0.0.1:{port}']}}]}}\n"
    )
    with entrypoint("run", "--", *CHILD, env=metrics_env(port)) as run:
        run.wait_event("metrics_listening")
        with subprocess.Popen(
            [binary, f"--config.file={tmp_path / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp_path / 'data'}",
             f"--web.listen-address=127.0.0.1:{web}", "--log.level=warn"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ) as prometheus:  # fmt: skip
            try:

                def child_up() -> list[dict[str, object]]:
                    query = urllib.parse.urlencode({"query": "entrypoint_child_up"})
                    url = f"http://127.0.0.1:{web}/api/v1/query?{query}"
                    try:
                        with urllib.request.urlopen(url, timeout=2) as response:
                            result: list[dict[str, object]] = json.load(response)["data"]["result"]
                            return result
                    except OSError:
                        return []

                assert wait_until(lambda: bool(child_up()), 45), "no sample within 45 s"
                (sample,) = child_up()
                assert sample["value"][1] == "1"  # type: ignore[index]
                assert sample["metric"]["job"] == "worker"  # type: ignore[index]
            finally:
                prometheus.terminate()
                prometheus.wait(15)
        run.signal(signal.SIGTERM)
        assert run.wait() == 0
