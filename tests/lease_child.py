"""A supervised child that writes down when it ran, with what it was told.

    python tests/lease_child.py RECORD [FLAG_NAME]

Appends, in one write each (O_APPEND), to the shared file RECORD:

    start <pid> <supervisor pid> <FLAG_NAME's value or -> <ENTRYPOINT_LEASE_TOKEN or -> <t>
    stop <pid> <t>

`t` is CLOCK_MONOTONIC, the same clock in every process of the host. `stop`
is written on TERM, and the child exits 0 at once. TERM is blocked until the
`start` line is written: a child that has written `start` writes `stop` on
TERM; one that gets TERM earlier dies silently, having done nothing.
"""

from __future__ import annotations

import os
import signal
import sys
import time

signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})


def note(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (text + "\n").encode())
    finally:
        os.close(fd)


def main(argv: list[str]) -> None:
    record = argv[0]
    flag = os.environ.get(argv[1], "-") if len(argv) > 1 else "-"
    token = os.environ.get("ENTRYPOINT_LEASE_TOKEN", "-")

    def on_term(_signum: int, _frame: object) -> None:
        note(record, f"stop {os.getpid()} {time.monotonic():.6f}")
        os._exit(0)

    note(record, f"start {os.getpid()} {os.getppid()} {flag} {token} {time.monotonic():.6f}")
    signal.signal(signal.SIGTERM, on_term)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    while True:
        signal.pause()


if __name__ == "__main__":
    main(sys.argv[1:])
