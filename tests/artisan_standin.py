"""A stand-in for `php artisan queue:work` (no PHP here): Laravel's Redis queue layout, its stop.

    php artisan queue:work [redis] [--queue=NAME] [--stop-when-empty] [--timeout=N] [--sleep=S]

Run through a `php` shim (tests/test_lifecycle.py writes one). It pops jobs
from the Redis list `queues:NAME` at REDIS_URL as Laravel's Redis driver
stores them (a JSON payload per entry); each job here is `{"touch": PATH,
"seconds": S}`: it writes PATH.started, works S seconds, writes PATH.done.
Like Laravel's worker: TERM or QUIT lets the job in flight finish, then it
exits 0; with --stop-when-empty it exits 0 once the queue is empty. Only the
behaviour the entrypoint sees is reproduced: its argv, its signals, its exit
status.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import cast

from redis import Redis


def main() -> int:
    args = sys.argv[1:]
    if args[:2] != ["artisan", "queue:work"]:
        sys.stderr.write(f"stand-in artisan: unsupported command {args!r}\n")
        return 1
    options = dict(a.removeprefix("--").partition("=")[::2] for a in args[2:] if a[:2] == "--")
    queue = f"queues:{options.get('queue') or 'default'}"
    stopping: list[int] = []

    def stop(signum: int, _frame: object) -> None:
        stopping.append(signum)

    for signum in (signal.SIGTERM, signal.SIGQUIT, signal.SIGINT):
        signal.signal(signum, stop)
    marker = os.environ.get("ARTISAN_STARTED")
    if marker:
        Path(marker).touch()
    redis = Redis.from_url(os.environ["REDIS_URL"])
    sys.stdout.write(f"artisan ready (pid: {os.getpid()})\n")
    sys.stdout.flush()
    while not stopping:
        payload = cast("bytes | None", redis.lpop(queue))
        if payload is None:
            if "stop-when-empty" in options:
                return 0
            time.sleep(float(options.get("sleep") or 0.1))
            continue
        job = json.loads(payload)
        Path(job["touch"] + ".started").touch()
        deadline = time.monotonic() + float(job["seconds"])
        while time.monotonic() < deadline:  # a signal only sets the flag: the job goes on
            time.sleep(max(0.0, min(0.05, deadline - time.monotonic())))
        Path(job["touch"] + ".done").touch()
    return 0


if __name__ == "__main__":
    sys.exit(main())
