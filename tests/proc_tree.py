"""Process trees for the memory and /proc tests; every process lives until stdin closes.

    python tests/proc_tree.py alloc MB
    python tests/proc_tree.py family MB
    python tests/proc_tree.py churn
    python tests/proc_tree.py escape N
    python tests/proc_tree.py oom CGROUP_DIR

alloc: allocate (and touch) MB MiB, print `ready PID`.
family: a parent with two children in its group, one child in a session of its
  own (setsid), each holding MB MiB, and one re-parented orphan in a session of
  its own holding 4 x MB MiB; prints `ready parent=P member=A,B left=C orphan=D` once all of them
  have allocated and the orphan's parent is gone.
churn: print `ready PID`, then fork children and grandchildren that exit at once,
  in a loop.
escape: become a subreaper, start a child that double-forks N processes into
  sessions of their own; prints `subreaper PID`, `escaped PID` for each, and
  `done CHILD_PID` once every one of them has been re-parented to the subreaper.
oom: move into the cgroup CGROUP_DIR, read its OOM kill count, run a process
  that allocates until it is killed (at most 1 GiB), read the count again; print
  `{"before": N, "after": N, "signal": N, "exit": N, "cgroup": PATH, "limit": N}`
  as JSON.
"""

from __future__ import annotations

import json
import os
import select
import sys
import traceback
from collections.abc import Callable

MIB = 2**20


def say(text: str) -> None:
    os.write(1, f"{text}\n".encode())


def hold(mib: int) -> bytes:
    """MIB MiB, every page written, so that it is resident."""
    return b"\x01" * (mib * MIB)


def block() -> None:
    """Until stdin reaches end of file."""
    while os.read(0, 4096):
        pass


def forked(body: Callable[[], object]) -> int:
    """Run `body` in a child process that exits when it returns; the child's pid."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            body()
        except BaseException:
            traceback.print_exc()
            code = 1
        os._exit(code)
    return pid


def ready_fields(line: str) -> dict[str, str]:
    """`ready a=1 b=2,3` -> {"a": "1", "b": "2,3"}."""
    return dict(item.split("=", 1) for item in line.split()[1:])


def alloc(mib: int) -> None:
    data = hold(mib)
    say(f"ready {os.getpid()}")
    block()
    del data


def family(mib: int) -> None:
    done_r, done_w = os.pipe()

    def allocate_and_report(*, leave: bool, size: int = mib) -> None:
        if leave:
            os.setsid()
        data = hold(size)
        os.write(done_w, f"{os.getpid()},".encode())
        block()
        del data

    members = [forked(lambda: allocate_and_report(leave=False)) for _ in range(2)]
    left = forked(lambda: allocate_and_report(leave=True))
    middle = forked(lambda: forked(lambda: allocate_and_report(leave=True, size=4 * mib)))
    # The middle process exits at once: once it is reaped, the orphan has a new parent.
    os.waitpid(middle, 0)
    os.close(done_w)
    reported: list[str] = []
    while len(reported) < 4:
        chunk = os.read(done_r, 4096)
        if not chunk:
            break
        reported += [pid for pid in chunk.decode().split(",") if pid]
    known = {str(pid) for pid in (*members, left)}
    orphan = next(pid for pid in reported if pid not in known)
    say(
        f"ready parent={os.getpid()} member={','.join(map(str, members))} "
        f"left={left} orphan={orphan}"
    )
    block()


def churn() -> None:
    say(f"ready {os.getpid()}")
    while not select.select([0], [], [], 0)[0]:
        pid = forked(lambda: os.waitpid(forked(lambda: None), 0))
        os.waitpid(pid, 0)


def escape(count: int) -> None:
    from entrypoint.runtime.children import become_subreaper

    if not become_subreaper():
        say("subreaper failed")
        return
    say(f"subreaper {os.getpid()}")

    def child() -> None:
        for _ in range(count):

            def middle() -> None:
                os.setsid()
                say(f"escaped {forked(block)}")

            # Reaped: the middle has exited, so its child already has the subreaper as parent.
            os.waitpid(forked(middle), 0)
        say(f"done {os.getpid()}")
        block()

    forked(child)
    # Reap the child and every escaped process once stdin closes and they exit.
    while True:
        try:
            os.wait()
        except ChildProcessError:
            return


def oom(directory: str) -> None:
    from entrypoint.runtime import memory

    with open(os.path.join(directory, "cgroup.procs"), "w") as handle:
        handle.write(str(os.getpid()))
    cgroup = memory.find_cgroup()
    before = memory.oom_kills(cgroup)

    def victim() -> None:
        with open("/proc/self/oom_score_adj", "w") as handle:
            handle.write("1000")
        chunks = [hold(1) for _ in range(1024)]
        del chunks

    _, status = os.waitpid(forked(victim), 0)
    print(
        json.dumps(
            {
                "before": before,
                "after": memory.oom_kills(cgroup),
                "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
                "exit": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
                "cgroup": cgroup.path if cgroup else None,
                "limit": memory.memory_limit(cgroup),
            }
        ),
        flush=True,
    )


def main() -> None:
    command, *args = sys.argv[1:]
    if command == "alloc":
        alloc(int(args[0]))
    elif command == "family":
        family(int(args[0]))
    elif command == "churn":
        churn()
    elif command == "escape":
        escape(int(args[0]))
    elif command == "oom":
        oom(args[0])
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main()
