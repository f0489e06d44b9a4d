"""9. What metrics cost: import time and RSS of prometheus_client, and the time to serve a scrape.

    .venv/bin/python benchmarks/metrics.py [--scrapes N] [--json FILE]

- import: `python -X importtime`-style, measured in a fresh interpreter that
  has already imported the supervisor's modules (what the supervisor adds by
  turning metrics on), best of 5.
- RSS: the supervisor's modules alone vs. with the metrics module and one
  server bound (VmRSS, in a fresh interpreter each).
- scrape: a MetricsServer on a Loop in a thread (as in the supervisor),
  scraped N times over loopback by a client in another process; the time from
  connect to the last byte, p50 and p99, with and without queue depth
  (against the Redis on 6379 when it answers).

The entrypoint measured is the one this interpreter imports: benchmarks/run.py
runs this file with the throwaway venv's interpreter (the installed wheel).
The idle measure (idle.py) scrapes a real running supervisor too.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if __name__ == "__main__":  # run as a file: this folder must not shadow the standard library
    if sys.path and Path(sys.path[0]).resolve() == ROOT / "benchmarks":
        del sys.path[0]
    sys.path.append(str(ROOT))  # last: an installed entrypoint wins over this checkout

import argparse  # noqa: E402 - after the path is set
import importlib.util  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import textwrap  # noqa: E402
from typing import TYPE_CHECKING, Any  # noqa: E402

from benchmarks.common import clean_env, run_quiet  # noqa: E402
from benchmarks.harness import Context, Measure, Result, Section  # noqa: E402
from benchmarks.table import table  # noqa: E402

if TYPE_CHECKING:
    from entrypoint.runtime.metrics import MetricsServer

SUPERVISOR = "import entrypoint.runtime.supervisor, entrypoint.cli.main, entrypoint.runtime.log"
WITHOUT_DEPTH = "without queue depth"
WITH_DEPTH = "with 3 queue depths (Redis, no cache)"

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


def _pythonpath() -> dict[str, str]:
    """PYTHONPATH for a fresh interpreter: this checkout, unless an installed entrypoint is used."""
    spec = importlib.util.find_spec("entrypoint")
    origin = Path(spec.origin).resolve() if spec is not None and spec.origin else None
    if origin is None or ROOT in origin.parents:
        return {"PYTHONPATH": str(ROOT)}
    return {}


def fresh(code: str, *args: str) -> str:
    env = {**os.environ, **_pythonpath()}
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


def collect(scrapes: int) -> dict[str, Any]:
    imports = [float(fresh(IMPORT_CODE.format(supervisor=SUPERVISOR))) * 1000 for _ in range(5)]
    off = statistics.median(
        int(fresh(RSS_CODE.format(supervisor=SUPERVISOR), "off")) for _ in range(3)
    )
    on = statistics.median(
        int(fresh(RSS_CODE.format(supervisor=SUPERVISOR), "on")) for _ in range(3)
    )
    found: dict[str, Any] = {
        "import_ms_best": round(min(imports), 2),
        "import_ms_median": round(statistics.median(imports), 2),
        "rss_off_mib": round(off / 2**20, 1),
        "rss_on_mib": round(on / 2**20, 1),
        "rss_added_mib": round((on - off) / 2**20, 1),
        "scrape": {},
    }
    for depth in (False, True):
        times = scrape_times(scrapes, depth)
        if not times:
            continue
        ms = [t * 1000 for t in times]
        found["scrape"][WITH_DEPTH if depth else WITHOUT_DEPTH] = {
            "p50_ms": round(percentile(ms, 50), 3),
            "p99_ms": round(percentile(ms, 99), 3),
            "scrapes": len(ms),
        }
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scrapes", type=int, default=2000)
    parser.add_argument("--json")
    args = parser.parse_args()
    found = collect(args.scrapes)
    print(
        f"import of the metrics module (prometheus_client): best {found['import_ms_best']:.1f} ms, "
        f"median {found['import_ms_median']:.1f} ms"
    )
    print(
        f"RSS: metrics off {found['rss_off_mib']:.1f} MiB, on {found['rss_on_mib']:.1f} MiB "
        f"(+{found['rss_added_mib']:.1f} MiB)"
    )
    for label, scrape in found["scrape"].items():
        print(
            f"scrape {label}: p50 {scrape['p50_ms']:.2f} ms, p99 {scrape['p99_ms']:.2f} ms "
            f"over {scrape['scrapes']} scrapes"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(found, indent=2) + "\n")


# -- as a measure of benchmarks/run.py ----------------------------------------------------


def run(ctx: Context) -> dict[str, Result]:
    """This file run by the throwaway venv's interpreter: the installed wheel is measured."""
    out = ctx.tmp / "metrics.json"
    argv = [ctx.peers.python, __file__, "--scrapes", str(ctx.sizes.scrapes), "--json", str(out)]
    result = run_quiet(argv, 300, env=clean_env())
    if result.returncode != 0:
        raise RuntimeError(f"metrics.py exited {result.returncode}:\n{result.stderr[-3000:]}")
    found: dict[str, Any] = json.loads(out.read_text())
    return {"metrics": {"results": found.pop("scrape"), **found}}


def render(r: Result) -> str:
    text = table(
        "9. metrics: one scrape of a MetricsServer on a Loop thread, client in another process "
        "(ms)",
        [("p50 ms", "p50_ms"), ("p99 ms", "p99_ms"), ("scrapes", "scrapes")],
        r["results"],
    )
    if "import_ms_best" in r:
        text += (
            f"\n  import of prometheus_client on top of the supervisor's modules: best "
            f"{r['import_ms_best']} ms, median {r['import_ms_median']} ms; RSS of those modules "
            f"{r['rss_off_mib']} MiB, with a server bound {r['rss_on_mib']} MiB "
            f"(+{r['rss_added_mib']} MiB)"
        )
    return text


MEASURE = Measure(
    name="metrics",
    title="metrics: import, RSS, scrape (benchmarks/metrics.py)",
    run=run,
    sections=(Section("metrics", render, empty={"results": {}}),),
)


if __name__ == "__main__":
    main()
