"""A child for supervision tests: prints `ready (pid: N)` and echoes every signal.

    python tests/child.py [--on-term {exit,ignore,finish}] [--exit-code N]
                          [--work SECONDS] [--orphans N] [--grandchild]
                          [--runs FILE --plan STEP,STEP,...]

Each signal received is printed as `signal SIGNAME (pid: N)`. On TERM (or INT,
QUIT): `exit` exits with --exit-code, `ignore` keeps running, `finish` works
--work seconds more ("job finished") then exits with --exit-code. `--plan`
makes the N-th run (counted in --runs) follow step N: `fail` (exit 1 at once),
`ok` (exit 0 at once), `sleepX` (sleep X s, then go on with the next word of the
step: `sleep0.5+fail`), `kill9`, `serve` (run until signalled).
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import sys
import time

ECHOED = (
    "TERM", "INT", "QUIT", "HUP", "USR1", "USR2", "WINCH", "TTIN", "TTOU", "TSTP", "CONT", "ALRM",
)  # fmt: skip
STOPS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)


def say(text: str) -> None:
    sys.stdout.write(f"{text} (pid: {os.getpid()})\n")
    sys.stdout.flush()


def orphans(count: int) -> list[int]:
    """Leave `count` grandchildren whose parent is gone: they are re-parented. Their pids."""
    found = []
    for _ in range(count):
        read_end, write_end = os.pipe()
        middle = os.fork()
        if middle == 0:
            os.close(read_end)
            grandchild = os.fork()
            if grandchild == 0:
                os.close(write_end)  # or the parent's read would wait for this one's end
                time.sleep(0.2)
                os._exit(0)
            os.write(write_end, str(grandchild).encode())
            os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end) as pipe:
            found.append(int(pipe.read()))
        # The middle process is our own child: reap it so that only orphans remain.
        os.waitpid(middle, 0)
    return found


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--on-term", choices=("exit", "ignore", "finish"), default="exit")
    parser.add_argument("--exit-code", type=int, default=0)
    parser.add_argument("--work", type=float, default=0.0)
    parser.add_argument("--orphans", type=int, default=0)
    parser.add_argument("--grandchild", action="store_true")
    parser.add_argument("--die-by", type=int, default=0, help="on TERM, kill itself by this signal")
    parser.add_argument("--runs")
    parser.add_argument("--plan")
    args = parser.parse_args()

    if args.runs and args.plan:
        with open(args.runs, "a+") as handle:
            handle.write("run\n")
            handle.seek(0)
            run = handle.read().count("run\n")
        steps = args.plan.split(",")
        step = steps[min(run, len(steps)) - 1]
        say(f"run {run} step {step}")
        for word in step.split("+"):
            if word.startswith("sleep"):
                time.sleep(float(word[5:]))
            elif word == "fail":
                return 1
            elif word == "ok":
                return 0
            elif word == "kill9":
                os.kill(os.getpid(), signal.SIGKILL)

    stopping: list[int] = []

    def handler(signum: int, _frame: object) -> None:
        say(f"signal {signal.Signals(signum).name}")
        if signum in STOPS:
            stopping.append(signum)

    # Not signal.pause(): a signal that lands between a check and the pause
    # would leave it blocked for good. The wakeup fd keeps every signal.
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    for name in ECHOED:
        signal.signal(getattr(signal, "SIG" + name), handler)
    if args.grandchild:
        pid = os.fork()
        if pid == 0:
            signal.set_wakeup_fd(-1)
            for name in ECHOED:
                signal.signal(getattr(signal, "SIG" + name), handler)
            say("grandchild ready")
            while True:
                signal.pause()
    if args.orphans:
        pids = orphans(args.orphans)
        sys.stdout.write(f"orphans: {' '.join(map(str, pids))}\n")
        say(f"left {args.orphans} orphans")
    say("ready")
    while True:
        select.select([wake_r], [], [])
        os.read(wake_r, 512)
        if stopping and args.on_term != "ignore":
            if args.die_by:
                if args.die_by != signal.SIGKILL:
                    signal.signal(args.die_by, signal.SIG_DFL)
                os.kill(os.getpid(), args.die_by)
            if args.on_term == "finish":
                say("finishing job")
                time.sleep(args.work)
                say("job finished")
            return int(args.exit_code)


if __name__ == "__main__":
    sys.exit(main())
