"""A child for supervision tests: prints `ready (pid: N)` and echoes every signal.

    python tests/child.py [--on-term {exit,ignore,finish}] [--exit-code N]
                          [--work SECONDS] [--orphans N] [--grandchild]
                          [--runs FILE --plan STEP,STEP,...]
                          [--escape N [--escape-ignore K] [--escape-stopped M]]
                          [--members N] [--pool N --pool-mib MIB]
                          [--env NAME,...] [--send AT:TEXT]... [--send-on-term TEXT]
                          [--watchdog-every S] [--heartbeat-file PATH --every S]
                          [--beats N] [--job S] [--freeze-after S] [--hold-redis]
                          [--flood RATE:SECONDS:TEXT] [--send-size BYTES]...

Each signal received is printed as `signal SIGNAME (pid: N)`. On TERM (or INT,
QUIT): `exit` exits with --exit-code, `ignore` keeps running, `finish` works
--work seconds more ("job finished") then exits with --exit-code. `--plan`
makes the N-th run (counted in --runs) follow step N: `fail` (exit 1 at once),
`ok` (exit 0 at once), `sleepX` (sleep X s, then go on with the next word of the
step: `sleep0.5+fail`), `kill9`, `serve` (run until signalled), `growN` (once its
handlers are set: allocate N MiB, 10 MiB at a time, then say `grown N MiB`),
`oom` (once its handlers are set: make itself the OOM killer's first choice and allocate until
it is killed, at most 4 GiB).

`--escape N` leaves N grandchildren behind, each in a session of its own
(setsid) with a parent that has exited: each echoes signals and says
`escaped alive` (or `escaped ignoring` for the first K, which outlive TERM, INT and
QUIT; or `escaped stopping` for the last M, which then SIGSTOP themselves).
`--members N` starts N `sleep` processes in its own process group with TERM,
INT and QUIT ignored. `--pool N --pool-mib MIB` is a prefork master: N
children in its group, MIB MiB each; on a stop it sends TERM to each, waits
for them and exits.

Liveness (the sd_notify datagrams go to $NOTIFY_SOCKET, `\\n` in TEXT is a
newline): `--env` prints `env NAME=value` (or `env NAME unset`) for each name;
`--send AT:TEXT` sends TEXT AT seconds after the start (0: before `ready`);
`--send-on-term TEXT` sends it when a stop signal arrives; `--watchdog-every S`
sends WATCHDOG=1 every S seconds from a thread, `--heartbeat-file PATH --every S`
touches PATH so (`--beats N`: only N times, then silence, "heartbeats over");
`--job S` is a job of S seconds in the main thread ("job started", "job
finished", then exit 0; a stop waits for it) while the heartbeat thread goes
on; `--freeze-after S` SIGSTOPs the whole process after S seconds; `--hold-redis` keeps a
connection to the Redis of $QUEUE_URL and exits 1 when it fails or closes (a
worker that crashes when its broker is gone); `--flood RATE:SECONDS:TEXT` sends
TEXT RATE times a second for SECONDS from a thread, never blocking, then says
`flood sent N dropped M`; `--send-size BYTES` tries one datagram of that many
bytes and says `size BYTES sent` or `size BYTES failed ERRNO`.
"""

from __future__ import annotations

import argparse
import errno
import os
import select
import shutil
import signal
import socket
import sys
import threading
import time
import urllib.parse

MIB = 2**20

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


def grow(mib: int, chunks: list[bytes]) -> None:
    """Allocate `mib` MiB, every page written (resident), 10 MiB at a time."""
    while mib > 0:
        step = min(10, mib)
        chunks.append(b"\x01" * (step * MIB))
        mib -= step
        time.sleep(0.02)


def out_of_memory() -> None:
    with open("/proc/self/oom_score_adj", "w") as handle:
        handle.write("1000")
    say("allocating until killed")
    chunks = [b"\x01" * MIB for _ in range(4096)]
    del chunks


def escape(count: int, ignoring: int, stopped: int) -> list[int]:
    """Leave `count` processes in sessions of their own, re-parented; their pids once set up."""
    ready_r, ready_w = os.pipe()
    for index in range(count):
        middle = os.fork()
        if middle == 0:
            os.close(ready_r)
            os.setsid()
            middle_pid = os.getpid()
            if os.fork() == 0:
                ignore = index < ignoring
                stop_self = index >= count - stopped

                def handler(signum: int, _frame: object, ignore: bool = ignore) -> None:
                    say(f"signal {signal.Signals(signum).name}")
                    if signum in STOPS and not ignore:
                        os._exit(0)

                for name in ECHOED:
                    signal.signal(getattr(signal, "SIG" + name), handler)
                # The middle process is gone before this one says it is set up.
                while os.getppid() == middle_pid:
                    time.sleep(0.001)
                say("escaped " + ("ignoring" if ignore else "stopping" if stop_self else "alive"))
                os.write(ready_w, f"{os.getpid()},".encode())
                os.close(ready_w)
                if stop_self:
                    os.kill(os.getpid(), signal.SIGSTOP)
                while True:
                    signal.pause()
            os._exit(0)
        os.waitpid(middle, 0)
    os.close(ready_w)
    reported = b""
    while reported.count(b",") < count:
        chunk = os.read(ready_r, 4096)
        if not chunk:
            break
        reported += chunk
    os.close(ready_r)
    return [int(pid) for pid in reported.decode().split(",") if pid]


def members(count: int) -> list[int]:
    """`count` sleeps in this process's group, each with the stop signals ignored."""
    for signum in STOPS:
        signal.signal(signum, signal.SIG_IGN)
    sleep = shutil.which("sleep") or "/bin/sleep"
    # posix_spawn keeps ignored signals ignored across the exec.
    return [os.posix_spawn(sleep, [sleep, "600"], os.environ) for _ in range(count)]


def pool(count: int, mib: int) -> list[int]:
    """A prefork pool: `count` children in this process's group holding `mib` MiB each."""
    pids = []
    for _ in range(count):
        pid = os.fork()
        if pid == 0:
            for signum in STOPS:
                signal.signal(signum, signal.SIG_DFL)
            held: list[bytes] = []
            grow(mib, held)
            say(f"pool member holds {mib} MiB")
            while True:
                signal.pause()
        pids.append(pid)
    return pids


class Wakeup:
    """Waits for the next signal without missing one that came just before the wait."""

    def __init__(self) -> None:
        self._read, write = os.pipe()
        os.set_blocking(write, False)
        signal.set_wakeup_fd(write)

    def wait(self) -> None:
        select.select([self._read], [], [])
        os.read(self._read, 512)


def notify_socket(*, blocking: bool = True) -> socket.socket | None:
    """A datagram socket connected to $NOTIFY_SOCKET (None without one)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.setblocking(blocking)
    sock.connect("\0" + address[1:] if address.startswith("@") else address)
    return sock


def send(text: str) -> None:
    sock = notify_socket()
    if sock is None:
        say(f"no NOTIFY_SOCKET for {text!r}")
        return
    with sock:
        sock.send(text.replace("\\n", "\n").encode("utf-8", "surrogateescape"))


def send_size(size: int) -> None:
    sock = notify_socket()
    assert sock is not None
    with sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size + 4096)
        try:
            sock.send(b"STATUS=" + b"x" * (size - 7))
        except OSError as exc:
            say(f"size {size} failed {errno.errorcode.get(exc.errno or 0, exc.errno)}")
        else:
            say(f"size {size} sent")


def heartbeats(every: float, count: int | None, path: str | None, datagrams: bool) -> None:
    sock = notify_socket() if datagrams else None
    beats = 0
    while count is None or beats < count:
        if sock is not None:
            sock.send(b"WATCHDOG=1")
        if path is not None:
            with open(path, "a"):
                os.utime(path)
        beats += 1
        time.sleep(every)
    say("heartbeats over")


def flood(rate: float, seconds: float, text: str) -> None:
    sock = notify_socket(blocking=False)
    assert sock is not None
    datagram = text.replace("\\n", "\n").encode()
    sent = dropped = 0
    start = time.monotonic()
    while (elapsed := time.monotonic() - start) < seconds:
        try:
            sock.send(datagram)
            sent += 1
        except BlockingIOError:
            dropped += 1
        ahead = (sent + dropped) / rate - elapsed
        if ahead > 0:
            time.sleep(ahead)
    say(f"flood sent {sent} dropped {dropped}")


def hold_redis() -> None:
    """Keep a connection to the Redis of $QUEUE_URL; exit 1 when it fails or closes."""
    url = urllib.parse.urlsplit(os.environ["QUEUE_URL"])
    try:
        conn = socket.create_connection((url.hostname, url.port or 6379), timeout=2)
        if url.password:
            password = urllib.parse.unquote(url.password).encode()
            conn.sendall(b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(password), password))
            if not conn.recv(64).startswith(b"+OK"):
                raise OSError("AUTH refused")
        conn.sendall(b"*1\r\n$4\r\nPING\r\n")
        if not conn.recv(64).startswith(b"+PONG"):
            raise OSError("no PONG")
        conn.settimeout(None)
    except OSError as exc:
        say(f"redis unreachable: {exc}")
        os._exit(1)
    say("redis connected")
    try:
        while conn.recv(4096):
            pass
    except OSError:
        pass
    say("redis gone")
    os._exit(1)


def later(delay: float, action: object, *args: object) -> None:
    def run() -> None:
        time.sleep(delay)
        action(*args)  # type: ignore[operator]

    threading.Thread(target=run, daemon=True).start()


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
    parser.add_argument("--escape", type=int, default=0)
    parser.add_argument("--escape-ignore", type=int, default=0)
    parser.add_argument("--escape-stopped", type=int, default=0)
    parser.add_argument("--members", type=int, default=0)
    parser.add_argument("--pool", type=int, default=0)
    parser.add_argument("--pool-mib", type=int, default=0)
    parser.add_argument("--env", default="")
    parser.add_argument("--send", action="append", default=[])
    parser.add_argument("--send-on-term")
    parser.add_argument("--watchdog-every", type=float)
    parser.add_argument("--heartbeat-file")
    parser.add_argument("--every", type=float, default=0.2)
    parser.add_argument("--beats", type=int)
    parser.add_argument("--job", type=float)
    parser.add_argument("--freeze-after", type=float)
    parser.add_argument("--hold-redis", action="store_true")
    parser.add_argument("--flood")
    parser.add_argument("--send-size", type=int, action="append", default=[])
    args = parser.parse_args()
    deferred: list[str] = []  # plan words that run once the handlers are set

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
            elif word.startswith("grow") or word == "oom":
                deferred.append(word)

    stopping: list[int] = []

    def handler(signum: int, _frame: object) -> None:
        say(f"signal {signal.Signals(signum).name}")
        if signum in STOPS:
            stopping.append(signum)

    if args.members:
        say(f"members {','.join(map(str, members(args.members)))}")
    for name in ECHOED:
        signal.signal(getattr(signal, "SIG" + name), handler)
    wakeup = Wakeup()
    held: list[bytes] = []
    for word in deferred:
        if word == "oom":
            out_of_memory()
        else:
            grow(int(word[4:]), held)
            say(f"grown {word[4:]} MiB")
    workers = pool(args.pool, args.pool_mib) if args.pool else []
    if args.escape:
        escaped = escape(args.escape, args.escape_ignore, args.escape_stopped)
        say(f"left {len(escaped)} escaped: {','.join(map(str, escaped))}")
    for name in filter(None, args.env.split(",")):
        value = os.environ.get(name)
        say(f"env {name} unset" if value is None else f"env {name}={value}")
    for size in args.send_size:
        send_size(size)
    for item in args.send:
        at, _, text = item.partition(":")
        if float(at) <= 0:
            send(text)
        else:
            later(float(at), send, text)
    if args.watchdog_every or args.heartbeat_file:
        beat = threading.Thread(
            target=heartbeats,
            args=(
                args.watchdog_every or args.every,
                args.beats,
                args.heartbeat_file,
                bool(args.watchdog_every),
            ),
            daemon=True,
        )
        beat.start()
    if args.freeze_after is not None:
        later(args.freeze_after, os.kill, os.getpid(), signal.SIGSTOP)
    if args.hold_redis:
        threading.Thread(target=hold_redis, daemon=True).start()
    if args.flood:
        rate, seconds, text = args.flood.split(":", 2)
        threading.Thread(
            target=flood, args=(float(rate), float(seconds), text), daemon=True
        ).start()
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
    if args.job is not None:
        say("job started")
        time.sleep(args.job)  # signal handlers run in between; a stop waits for the job
        say("job finished")
        if not stopping:
            return 0
    seen = 0  # stop signals handled so far
    while True:
        if len(stopping) == seen:
            # A stop that came while it was busy (growing, forking) is acted on at once.
            wakeup.wait()
        if len(stopping) == seen:
            continue
        if args.send_on_term and not seen:
            send(args.send_on_term)
        seen = len(stopping)
        if args.on_term != "ignore":
            if args.die_by:
                if args.die_by != signal.SIGKILL:
                    signal.signal(args.die_by, signal.SIG_DFL)
                os.kill(os.getpid(), args.die_by)
            if args.on_term == "finish":
                say("finishing job")
                time.sleep(args.work)
                say("job finished")
            for worker in workers:
                os.kill(worker, signal.SIGTERM)
            for worker in workers:
                os.waitpid(worker, 0)
            return int(args.exit_code)


if __name__ == "__main__":
    sys.exit(main())
