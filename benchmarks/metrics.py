"""What metrics cost: import time and RSS of prometheus_client, and the time to serve a scrape.

    .venv/bin/python benchmarks/metrics.py [--scrapes N]

- import: `python -X importtime`-style, measured in a fresh interpreter that
  has already imported the supervisor's modules (what the supervisor adds by
  turning metrics on), best of 5.
- RSS: the supervisor's modules alone vs. with the metrics module and one
  server bound (VmRSS, in a fresh interpreter each).
- scrape: a MetricsServer on a Loop in a thread (as in the supervisor),
  scraped N times over loopback by a client in another process; the time from
  connect to the last byte, p50 and p99, with and without queue depth
  (against the Redis on 6379 when it answers).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SUPERVISOR = "import entrypoint.runtime.supervisor, entrypoint.cli.main, entrypoint.runtime.log"

RSS_CODE = """
import sys
{supervisor}
if sys.argv[1] == "on":
    from entrypoint.runtime.loop import Loop
    from entrypoint.runtime.metrics import MetricsServer, Snapshot
    server = MetricsServer(Loop(), "127.0.0.1", 0, Snapshot)
for line in open("/proc/self/status"):
    if line.startswith("VmRSS:"):
        print(int(line.split()[1]) * 1024)
"""

IMPORT_CODE = """
import time
{supervisor}
started = time.perf_counter()
import entrypoint.runtime.metrics
print(time.perf_counter() - started)
"""

CLIENT = """
import json, socket, sys, time
port, count = int(sys.argv[1]), int(sys.argv[2])
times = []
for _ in range(count):
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
        while sock.recv(65536):
            pass
    times.append(time.perf_counter() - started)
print(json.dumps(times))
"""


def fresh(code: str, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = (len(ordered) - 1) * q / 100
    low = int(index)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (index - low)


def scrape_times(count: int, depth: bool) -> list[float] | None:
    sys.path.insert(0, str(ROOT))
    from entrypoint.plan.depth import parse_queue_depth
    from entrypoint.plan.urls import parse_url
    from entrypoint.runtime.depth import QueueDepths
    from entrypoint.runtime.metrics import MetricsServer, Snapshot
    from tests.loop_thread import LoopThread

    snapshot = Snapshot(
        child_up=True,
        starts=3,
        leader=True,
        dependencies=(("redis://127.0.0.1:6379/0", True),),
        heartbeat_age_seconds=1.0,
    )
    running = LoopThread()
    try:

        def serve() -> MetricsServer:
            depths = None
            if depth:
                depths = QueueDepths(
                    running.loop,
                    parse_url("redis://127.0.0.1:6379/0", "QUEUE_URL"),
                    parse_queue_depth("rq:bench-none,celery:bench-none,laravel:bench-none"),
                    max_age=0.0,  # every scrape reads: the worst case
                )
            return MetricsServer(running.loop, "127.0.0.1", 0, lambda: snapshot, depths=depths)

        server = running.call(serve)
        out = fresh(textwrap.dedent(CLIENT), str(server.address[1]), str(count))
        running.call(server.close)
    finally:
        running.stop()
    times: list[float] = json.loads(out)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scrapes", type=int, default=2000)
    args = parser.parse_args()
    imports = [float(fresh(IMPORT_CODE.format(supervisor=SUPERVISOR))) * 1000 for _ in range(5)]
    off = statistics.median(
        int(fresh(RSS_CODE.format(supervisor=SUPERVISOR), "off")) for _ in range(3)
    )
    on = statistics.median(
        int(fresh(RSS_CODE.format(supervisor=SUPERVISOR), "on")) for _ in range(3)
    )
    print(
        f"import of the metrics module (prometheus_client): best {min(imports):.1f} ms, "
        f"median {statistics.median(imports):.1f} ms"
    )
    print(
        f"RSS: metrics off {off / 2**20:.1f} MiB, on {on / 2**20:.1f} MiB "
        f"(+{(on - off) / 2**20:.1f} MiB)"
    )
    for depth in (False, True):
        times = scrape_times(args.scrapes, depth)
        if not times:
            continue
        ms = [t * 1000 for t in times]
        label = "with 3 queue depths (Redis, no cache)" if depth else "without queue depth"
        print(
            f"scrape {label}: p50 {percentile(ms, 50):.2f} ms, p99 {percentile(ms, 99):.2f} ms "
            f"over {len(ms)} scrapes"
        )


if __name__ == "__main__":
    main()
