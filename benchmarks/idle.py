"""3. Idle cost of the supervising process, its child asleep; then the CLI (cli.py) against it.

Every supervisor runs at once, each with a child that does nothing (`sleep
3600`): tini, dumb-init, supervisord, honcho, and the entrypoint with every
feature off, with a Redis dependency to wait for first, and with one feature
on at a time:

- ENTRYPOINT_NOTIFY=1 and a 1 s watchdog, the child sending WATCHDOG=1 every
  0.5 s: its wakeups should be those the heartbeats cause, one per datagram.
  Each heartbeat is also written to the state file; on a disk file system
  (ext4) creating and renaming it blocks once more in the journal, so the same
  setup runs a second time with its state file on a tmpfs (/dev/shm, where a
  read-only container's state goes): the budget is read there;
- ENTRYPOINT_MAX_RSS at the default 5 s ENTRYPOINT_MEMORY_INTERVAL: one wakeup
  per sample, figures also given per minute;
- ENTRYPOINT_METRICS_ADDR, scraped once before the window: 0 wakeups between
  scrapes, its RSS next to the features-off row; after the window it is
  scraped again, by a client in another process, for the time to serve one.

After 1.5 s of settling, `/proc/PID/task/*/status` (voluntary and involuntary
context switches, summed over threads), `/proc/PID/task/*/sched`
(`se.sum_exec_runtime`) and VmRSS are read before and after the window.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import socket
import statistics
import time
from pathlib import Path
from typing import Any

from benchmarks import cli, metrics
from benchmarks.common import (
    DUMB,
    EP,
    EP_REDIS,
    HONCHO,
    REDIS_URL,
    SUPD,
    TINI,
    Usage,
    clean_env,
    command_name,
    descendants,
    free_port,
    percentile,
    redis_up,
    rounded,
    run_quiet,
    supervisord_conf,
    usage,
    worker_env,
)
from benchmarks.harness import Context, Measure, Result, Section
from benchmarks.table import Budget, budget, get, ratio_text, table

EP_NOTIFY = "entrypoint (notify, 1 s watchdog)"
EP_NOTIFY_SHM = "entrypoint (notify, state on tmpfs)"
EP_RSS = "entrypoint (MAX_RSS, 5 s)"
EP_METRICS = "entrypoint (metrics on)"

HEARTBEAT_S = 0.5
WATCHDOG_S = 1
MEMORY_INTERVAL_S = 5.0  # ENTRYPOINT_MEMORY_INTERVAL's default

# Sends READY=1, then WATCHDOG=1 every argv[2] seconds, and appends one byte to
# the file argv[1] per heartbeat sent: the count of heartbeats in the window.
NOTIFY_CHILD = """\
import os, socket, sys, time
count = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
address = os.environ["NOTIFY_SOCKET"]
if address.startswith("@"):
    address = "\\0" + address[1:]
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.connect(address)
sock.send(b"READY=1")
period = float(sys.argv[2])
next_at = time.monotonic()
while True:
    next_at += period
    time.sleep(max(0.0, next_at - time.monotonic()))
    sock.send(b"WATCHDOG=1")
    os.write(count, b".")
"""


def scrape_once(port: int, timeout: float) -> bool:
    """One GET /metrics, retried until the server listens or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), timeout=2) as sock,
        ):
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: bench\r\n\r\n")
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
            return answer.startswith(b"HTTP/1.1 200")
        time.sleep(0.05)
    return False


def run(ctx: Context) -> dict[str, Result]:
    peers, sizes, tmp, procs = ctx.peers, ctx.sizes, ctx.tmp, ctx.procs
    sleep = [shutil.which("sleep") or "/bin/sleep", "3600"]
    procfile = tmp / "Procfile"
    procfile.write_text("sleeper: sleep 3600\n")
    notify_child = tmp / "notify_child.py"
    notify_child.write_text(NOTIFY_CHILD)
    beats = tmp / "heartbeats"
    beats_shm = tmp / "heartbeats-shm"
    shm_state = f"/dev/shm/entrypoint-bench-{os.getpid()}.json"
    port = free_port()
    ep = [peers.entrypoint, "run", "--"]
    # The same worker with a queue to wait for first: what the probes leave behind.
    with_redis = worker_env(tmp, "idle-redis", QUEUE_URL=REDIS_URL, ENTRYPOINT_WAIT_TIMEOUT="5")
    notify = worker_env(
        tmp, "idle-notify", ENTRYPOINT_NOTIFY="1", ENTRYPOINT_WATCHDOG_TIMEOUT=str(WATCHDOG_S)
    )
    notify_shm = {**notify, "ENTRYPOINT_STATE_FILE": shm_state}
    notify_argv = [*ep, peers.python, "-I", "-S", str(notify_child)]
    setups: dict[str, tuple[list[str], dict[str, str], str] | None] = {
        EP: ([*ep, *sleep], worker_env(tmp, "idle"), "sleep"),
        EP_REDIS: ([*ep, *sleep], with_redis, "sleep") if redis_up() else None,
        EP_NOTIFY: ([*notify_argv, str(beats), str(HEARTBEAT_S)], notify, "python3"),
        EP_NOTIFY_SHM: (
            [*notify_argv, str(beats_shm), str(HEARTBEAT_S)],
            notify_shm,
            "python3",
        )
        if os.access("/dev/shm", os.W_OK)
        else None,
        EP_RSS: ([*ep, *sleep], worker_env(tmp, "idle-rss", ENTRYPOINT_MAX_RSS="1G"), "sleep"),
        EP_METRICS: (
            [*ep, *sleep],
            worker_env(tmp, "idle-metrics", ENTRYPOINT_METRICS_ADDR=f"127.0.0.1:{port}"),
            "sleep",
        ),
        TINI: ([peers.tini, "-s", "--", *sleep], clean_env(), "sleep") if peers.tini else None,
        DUMB: ([peers.dumb_init, *sleep], clean_env(), "sleep") if peers.dumb_init else None,
        SUPD: (
            [peers.supervisord, "-c", str(supervisord_conf(tmp, "idle", " ".join(sleep)))],
            clean_env(),
            "sleep",
        )
        if peers.supervisord
        else None,
        HONCHO: (
            [*peers.honcho, "-f", str(procfile), "-d", str(tmp), "start"],
            clean_env(),
            "sleep",
        )
        if peers.honcho
        else None,
    }
    present = [label for label, setup in setups.items() if setup]
    # What stays up after the window: the CLI reads a state file, the scrape needs a server.
    kept = {EP, EP_REDIS, EP_METRICS}
    pids: dict[str, int] = {}
    scrape: dict[str, Any] = {}
    try:
        for label in present:
            setup = setups[label]
            assert setup is not None
            pids[label] = procs.start(f"idle {label}", setup[0], setup[1])
        deadline = time.monotonic() + 20
        waiting = set(present)
        while waiting:  # every supervisor has its child running
            waiting = {
                label
                for label in waiting
                if not any(
                    command_name(pid) == setups[label][2]  # type: ignore[index]
                    for pid in descendants(pids[label])
                )
            }
            if waiting and time.monotonic() > deadline:
                tails = "\n".join(procs.log_tail(f"idle {label}") for label in waiting)
                raise RuntimeError(f"no child started under {sorted(waiting)}\n{tails}")
            time.sleep(0.05)
        if not scrape_once(port, 10):  # before the window: the window is "between scrapes"
            raise RuntimeError(
                f"{EP_METRICS}: no answer on {port}\n{procs.log_tail(f'idle {EP_METRICS}')}"
            )
        time.sleep(1.5)  # past supervisord's and honcho's start-up work
        beats_before = {path: size(path) for path in (beats, beats_shm)}
        before = {label: usage(pids[label]) for label in present}
        started = time.monotonic()
        time.sleep(sizes.idle_seconds)
        seconds = time.monotonic() - started
        after = {label: usage(pids[label]) for label in present}
        beats_after = {path: size(path) for path in (beats, beats_shm)}
        for label in present:
            if procs.running[f"idle {label}"].poll() is not None:
                raise RuntimeError(f"{label} exited during the idle window")
        for label in present:
            if label not in kept:  # nothing else runs beside what follows
                procs.stop(f"idle {label}")
        if EP_REDIS in pids:
            cli_env, against = with_redis, f"{EP_REDIS}, MODE=worker QUEUE_URL={REDIS_URL}"
        else:
            cli_env = worker_env(tmp, "idle", QUEUE_URL=REDIS_URL)
            against = f"{EP}, MODE=worker (no dependency)"
        cli_result = cli.measure(ctx, cli_env, against)
        scrape = scrape_times(ctx, port)
    finally:
        for label in present:
            procs.stop(f"idle {label}")
        with contextlib.suppress(OSError):
            os.unlink(shm_state)
    results: dict[str, Any] = dict.fromkeys(setups)
    for label in present:
        results[label] = figures(before[label], after[label])
    for label, path in ((EP_NOTIFY, beats), (EP_NOTIFY_SHM, beats_shm)):
        if results.get(label):
            results[label]["heartbeats"] = beats_after[path] - beats_before[path]
    if results.get(EP_RSS):
        row = results[EP_RSS]
        row["wakeups_per_minute"] = rounded(row["voluntary_switches"] * 60 / seconds, 1)
        row["cpu_ms_per_minute"] = rounded(row["cpu_ms"] * 60 / seconds, 3)
        row["samples_due"] = math.floor(seconds / MEMORY_INTERVAL_S) + 1
    if results.get(EP_METRICS) and results.get(EP):
        results[EP_METRICS]["rss_vs_off_mb"] = rounded(
            results[EP_METRICS]["rss_mb"] - results[EP]["rss_mb"], 1
        )
    idle = {
        "seconds": round(seconds, 2),
        "heartbeat_s": HEARTBEAT_S,
        "watchdog_s": WATCHDOG_S,
        "memory_interval_s": MEMORY_INTERVAL_S,
        "scrape": scrape,
        "results": results,
    }
    return {"idle": idle, "cli": cli_result}


def size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def figures(first: Usage, last: Usage) -> dict[str, Any]:
    return {
        "voluntary_switches": last.voluntary - first.voluntary,
        "involuntary_switches": last.involuntary - first.involuntary,
        "cpu_ms": rounded(last.cpu_ms - first.cpu_ms, 3),
        "rss_mb": rounded(last.rss_mb, 1),
    }


def scrape_times(ctx: Context, port: int) -> dict[str, Any]:
    """GET /metrics of the running supervisor, N times from another process: p50 and p99."""
    count = ctx.sizes.scrapes
    client = [ctx.peers.python, "-I", "-S", "-c", metrics.CLIENT, str(port), str(count)]
    result = run_quiet(client, 120, env=clean_env())
    if result.returncode != 0:
        raise RuntimeError(f"the scrape client failed:\n{result.stderr[-2000:]}")
    ms = [t * 1000 for t in json.loads(result.stdout)]
    return {
        "scrapes": len(ms),
        "p50_ms": rounded(statistics.median(ms), 3),
        "p99_ms": rounded(percentile(ms, 99), 3),
    }


def render(r: Result) -> str:
    text = table(
        f"3. idle supervising process over {r['seconds']} s, child sleeping",
        [
            ("wakeups", "voluntary_switches"),
            ("preempted", "involuntary_switches"),
            ("CPU ms", "cpu_ms"),
            ("RSS MB", "rss_mb"),
        ],
        r["results"],
    )
    rows = r["results"]
    for label, where in ((EP_NOTIFY, "state file on disk"), (EP_NOTIFY_SHM, "on tmpfs")):
        if notify := rows.get(label):
            text += (
                f"\n  notify, {where}: {notify['heartbeats']} WATCHDOG=1 sent in the window "
                f"(one every {r['heartbeat_s']} s), {notify['voluntary_switches']} wakeups"
            )
    if rss := rows.get(EP_RSS):
        text += (
            f"\n  MAX_RSS every {r['memory_interval_s']:g} s: {rss['wakeups_per_minute']} wakeups "
            f"and {rss['cpu_ms_per_minute']} ms CPU per minute "
            f"({rss['samples_due']} samples due in the window)"
        )
    if (on := rows.get(EP_METRICS)) and r.get("scrape"):
        scrape = r["scrape"]
        text += (
            f"\n  metrics: RSS {on['rss_vs_off_mb']:+} MB vs features off; one scrape of the "
            f"running supervisor p50 {scrape['p50_ms']} ms, p99 {scrape['p99_ms']} ms "
            f"({scrape['scrapes']} scrapes)"
        )
    return text


def budgets(r: Result) -> list[Budget]:
    rows = r.get("results", {})
    wake = get(rows, EP, "voluntary_switches")
    rss, srss = get(rows, EP, "rss_mb"), get(rows, SUPD, "rss_mb")
    beat_wake, beats = (
        get(rows, EP_NOTIFY_SHM, "voluntary_switches"),
        get(rows, EP_NOTIFY_SHM, "heartbeats"),
    )
    rss_wake, due = get(rows, EP_RSS, "voluntary_switches"), get(rows, EP_RSS, "samples_due")
    metrics_wake = get(rows, EP_METRICS, "voluntary_switches")
    return [
        budget("idle wakeups", f"0 in {r.get('seconds')} s", wake, 0, f"{wake}"),
        budget(
            "supervising RSS",
            "<= 0.75x supervisord's",
            rss,
            srss and 0.75 * srss,
            ratio_text(rss, srss, "MB"),
        ),
        budget(
            "idle wakeups, notify + watchdog",
            "<= 1 per heartbeat (+1), tmpfs",
            beat_wake,
            None if beats is None else beats + 1,
            f"{beat_wake} for {beats} heartbeats",
        ),
        budget(
            "idle wakeups, MAX_RSS",
            "<= 1 per sample due",
            rss_wake,
            due,
            f"{rss_wake} for {due} samples due",
        ),
        budget("idle wakeups, metrics on", "0 between scrapes", metrics_wake, 0, f"{metrics_wake}"),
    ]


MEASURE = Measure(
    name="idle",
    title="idle, features off and on (then health, health --ready, check)",
    run=run,
    sections=(
        Section("idle", render, budgets, {"seconds": 0, "results": {}}),
        cli.SECTION,
    ),
)
