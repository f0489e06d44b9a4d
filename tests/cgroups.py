"""A fresh memory cgroup with a limit, for the tests that need a real OOM kill (root only).

On cgroup v1 (this machine's kind: the v1 memory controller is mounted and
writable as root) it is made under the test's own memory cgroup; on v2 under
the mount, whose subtree_control must hand out the memory controller.
Without root or a writable controller the test skips, or fails under CI=true.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from entrypoint.runtime import memory
from entrypoint.runtime.memory import Cgroup
from tests.servers import missing


def _write(path: Path, text: str) -> bool:
    try:
        path.write_text(text)
    except OSError:
        return False
    return True


def _empty(directory: Path, into: Path) -> None:
    """Move every process of `directory` into the cgroup `into` (it must be empty to remove)."""
    with contextlib.suppress(OSError):
        for pid in (directory / "cgroup.procs").read_text().split():
            with contextlib.suppress(OSError):
                (into / "cgroup.procs").write_text(pid)


def _remove(directory: Path, back: Path) -> None:
    """Empty the cgroup `directory` into `back` and remove it; a dying process may take a while."""
    deadline = time.monotonic() + 10
    while True:
        _empty(directory, back)
        try:
            directory.rmdir()
        except OSError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)
        else:
            return


def _limited_v1(here: Cgroup, name: str, limit: int) -> tuple[Path, Path] | None:
    outer = Path(here.path) / name
    outer.mkdir()
    if not _write(outer / "memory.limit_in_bytes", str(limit)):
        outer.rmdir()
        return None
    # Where swap is on and accounted, swap must not absorb the allocation either.
    _write(outer / "memory.memsw.limit_in_bytes", str(limit))
    inner = outer / "inner"
    inner.mkdir()
    return outer, inner


def _limited_v2(here: Cgroup, name: str, limit: int) -> tuple[Path, Path] | None:
    # A v2 cgroup with processes cannot hand controllers to children: start at the mount.
    top = Path(here.mount_point)
    if "memory" not in (top / "cgroup.subtree_control").read_text().split():
        return None
    outer = top / name
    outer.mkdir()
    if not (
        _write(outer / "memory.max", str(limit))
        and _write(outer / "cgroup.subtree_control", "+memory")
    ):
        outer.rmdir()
        return None
    _write(outer / "memory.swap.max", "0")
    inner = outer / "inner"
    inner.mkdir()
    return outer, inner


@contextlib.contextmanager
def limited_cgroup(limit: int) -> Iterator[tuple[Cgroup, Path]]:
    """A fresh memory cgroup `inner` under one `outer` that has the limit; removed after.

    Yields (`outer` as a Cgroup, `inner`'s directory).
    """
    here = memory.find_cgroup()
    if os.geteuid() != 0:
        missing("creating a memory cgroup needs root")
    if here is None:
        missing("no memory controller (v1 memory or v2 memory.max) for this process")
    assert here is not None
    name = f"entrypoint-test-{uuid.uuid4().hex[:12]}"
    try:
        made = (_limited_v1 if here.version == 1 else _limited_v2)(here, name, limit)
    except OSError as exc:
        made = None
        reason = f"cannot create a memory cgroup under {here.path}: {exc}"
    else:
        reason = f"no writable memory controller under {here.path} (cgroup v{here.version})"
    if made is None:
        missing(reason)
    assert made is not None
    outer, inner = made
    try:
        yield Cgroup(here.version, str(outer), here.mount_point), inner
    finally:
        back = Path(here.path)
        for directory in (inner, outer):
            _remove(directory, back)


def inside(directory: Path, argv: list[str]) -> list[str]:
    """`argv` started inside the cgroup `directory`: a shell writes its own pid, then execs."""
    return ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', str(directory), *argv]
