"""A real Prometheus server scrapes a MetricsServer on a Loop, and answers a query for it.

Prometheus is the Debian package (`apt-get install prometheus`); absent, the
test skips with the reason, and fails under CI=true.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from entrypoint.runtime.metrics import MetricsServer, Snapshot
from tests.loop_thread import LoopThread
from tests.servers import missing

SNAPSHOT = Snapshot(child_up=True, starts=7, exits={"signal": 2}, leader=True)


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return int(sock.getsockname()[1])


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    running = LoopThread()
    yield running
    running.stop()


def query(port: int, promql: str) -> list[dict[str, object]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as response:
        answer = json.load(response)
    assert answer["status"] == "success"
    result: list[dict[str, object]] = answer["data"]["result"]
    return result


def test_prometheus_scrapes_and_answers(loop_thread: LoopThread, tmp_path: Path) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        missing("prometheus is not installed (apt-get install prometheus)")
        return
    server = loop_thread.call(
        lambda: MetricsServer(loop_thread.loop, "127.0.0.1", 0, lambda: SNAPSHOT)
    )
    target = f"127.0.0.1:{server.address[1]}"
    (tmp_path / "prometheus.yml").write_text(
        "global:\n"
        "  scrape_interval: 1s\n"
        "  scrape_timeout: 1s\n"
        "scrape_configs:\n"
        "  - job_name: entrypoint\n"
        f"    static_configs: [{{targets: ['{target}']}}]\n"
    )
    web = free_port()
    with subprocess.Popen(
        [
            binary,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{web}",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as prometheus:
        try:
            deadline = time.monotonic() + 45
            found: list[dict[str, object]] = []
            while time.monotonic() < deadline and not found:
                if prometheus.poll() is not None:
                    pytest.fail(f"prometheus exited: {prometheus.stderr.read()}")  # type: ignore[union-attr]
                try:
                    found = query(web, 'entrypoint_child_exits_total{reason="signal"}')
                except OSError:
                    found = []
                if not found:
                    time.sleep(0.5)  # the next scrape is at most a second away
            assert found, "no sample within 45 s"
            assert found[0]["value"][1] == "2"  # type: ignore[index]
            assert found[0]["metric"]["job"] == "entrypoint"  # type: ignore[index]
            (up,) = query(web, "up")
            assert up["value"][1] == "1"  # type: ignore[index]
            assert loop_thread.call(lambda: server.served) >= 1
        finally:
            prometheus.terminate()
            prometheus.wait(15)
    loop_thread.call(server.close)
