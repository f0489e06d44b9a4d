"""The supervisor's published state: one JSON file, replaced atomically on every change.

The supervisor writes it (a temporary file in the same directory, then a
rename) whenever its state changes, never on a timer; `health` and `status`
read it. Where the configured path cannot be written (a read-only root file
system has no writable /tmp; another user's file holds the name), the state
goes to the fallback `/dev/shm/entrypoint-state.<uid>.json`: Docker mounts a
writable tmpfs at /dev/shm in every container, `--read-only` ones included.

A reader trusts a state file only when it is a regular file owned by the
reader's own user (or root), and the supervisor it names is alive: same pid,
same start time (a recycled pid is not it), and an entrypoint by its command
line (so that a file naming PID 1 or any other live process proves nothing).
"""

from __future__ import annotations

import os
import stat
import sys
import time

from entrypoint.records import asdict, dataclass, fields

FALLBACK_DIR = "/dev/shm"  # noqa: S108 - a tmpfs in every container, writable under --read-only
MAX_STATE = 1 << 16
STATUS_LIMIT = 200  # characters of the child's STATUS= text kept


class States:
    """The values of `State.state`."""

    STARTING = "starting"  # the supervisor is up, nothing else yet
    WAITING = "waiting"  # for a dependency, at start or before a restart
    STANDBY = "standby"  # another replica holds the lease
    YIELDED = "yielded"  # a developer's handoff holds the queue
    RUNNING = "running"
    BACKOFF = "backoff"  # waiting to restart a child that failed
    STOPPING = "stopping"
    STOPPED = "stopped"


@dataclass(frozen=True)
class State:
    """What the supervisor publishes. Times are wall-clock (time.time()) seconds."""

    mode: str
    state: str
    supervisor_pid: int
    supervisor_start: str  # the process's start time in clock ticks (/proc/PID/stat)
    child_pid: int | None = None
    child_started: float | None = None
    restarts: int = 0
    last_exit: int | None = None
    last_exit_reason: str | None = None
    leader: bool | None = None  # None: no lease in this mode
    since: float = 0.0  # when `state` began
    detail: str = ""
    restart_at: float | None = None  # in backoff: when the next start is due
    stop_reason: str | None = None  # while stopping: stop, watchdog, memory, leadership...
    ready: bool | None = None  # None: no READY=1 expected (ENTRYPOINT_NOTIFY off)
    status: str | None = None  # the child's last STATUS= text
    notify: bool = False  # WATCHDOG=1 datagrams are heartbeats
    heartbeat: float | None = None  # the last WATCHDOG=1 (the heartbeat file is stat'ed instead)
    heartbeat_file: str | None = None
    heartbeat_max_age: float = 0.0  # 0: no limit
    heartbeat_age_s: float | None = None  # when written (StateStore); readers use heartbeat_age()
    dependencies_ok: bool | None = None  # at the last probe the supervisor made


def process_start(pid: int) -> str:
    """The start time of `pid` in clock ticks since boot ('' when unknown)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            text = handle.read().decode("ascii", "replace")
    except OSError:
        return ""
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    parts = text.rsplit(")", 1)[-1].split()
    return parts[19] if len(parts) > 19 else ""


def fallback_path() -> str:
    return os.path.join(FALLBACK_DIR, f"entrypoint-state.{os.geteuid()}.json")


def candidates(path: str) -> list[str]:
    """Where a state may be, in the order a reader looks."""
    fallback = fallback_path()
    return [path] if os.path.abspath(path) == fallback else [path, fallback]


def _write_one(path: str, data: bytes) -> None:
    import tempfile

    directory = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(prefix=".entrypoint-state.", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except BaseException:
        _unlink(temporary)
        raise


class StateStore:
    """Writes `State` values; a failed write is reported (once per cause), never raised."""

    def __init__(self, path: str, *, warn: object = None) -> None:
        self.path = path
        self.written_to: str | None = None
        self._warn = warn  # callable(event, **fields) or None
        self._failures: set[str] = set()

    def write(self, state: State) -> bool:
        import json  # here: the readers (health) never write

        document = asdict(state)
        age = heartbeat_age(state)
        document["heartbeat_age_s"] = None if age is None else round(age, 3)
        data = json.dumps(document).encode()
        errors = []
        for path in candidates(self.path):
            try:
                _write_one(path, data)
            except OSError as exc:
                errors.append(f"{path}: {exc.strerror or exc}")
                continue
            if path != self.written_to:
                self._moved(path)
            return True
        key = "; ".join(errors)
        if key not in self._failures and callable(self._warn):
            self._failures.add(key)
            self._warn("state_file_unwritable", path=self.path, error=key)
        return False

    def _moved(self, path: str) -> None:
        previous, self.written_to = self.written_to, path
        if previous is not None:
            # A state left at the other place would be read first, and be stale.
            _unlink(previous)
        elif path != self.path and callable(self._warn):
            self._warn("state_file_fallback", path=self.path, fallback=path)

    def remove_stale(self) -> None:
        """Remove this user's state left at the fallback by an earlier supervisor."""
        if self.written_to != fallback_path():
            _unlink(fallback_path())


def _unlink(path: str) -> None:
    # Not contextlib.suppress: contextlib imports collections and functools, and
    # this module is most of what `entrypoint health` imports.
    try:  # noqa: SIM105
        os.unlink(path)
    except OSError:
        pass


class Untrusted(Exception):
    """A state file that proves nothing: the message says why (one line)."""


def _read_one(path: str) -> State:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise Untrusted(f"state file {path} cannot be read ({exc.strerror or exc})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_STATE:
            raise Untrusted(f"state file {path} is not a state file")
        if info.st_uid not in (os.geteuid(), 0):
            raise Untrusted(f"state file {path} belongs to another user (uid {info.st_uid})")
        raw = os.read(fd, MAX_STATE)
    finally:
        os.close(fd)
    try:
        data = loads(raw)
        if not isinstance(data, dict):
            raise TypeError("not an object")
        known = {f.name for f in fields(State)}
        return State(**{k: v for k, v in data.items() if k in known})
    except (ValueError, TypeError) as exc:
        raise Untrusted(f"state file {path} is unreadable or corrupt ({exc})") from None


class _Decoding:
    """What CPython's C JSON scanner reads from json.JSONDecoder, with json.loads's defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = float  # NaN, Infinity, -Infinity: float() reads all three


_JSON_SPACE = " \t\n\r"


def loads(raw: bytes) -> object:
    """json.loads of one state file, ValueError when it is not one JSON document.

    Without importing json: json.decoder compiles regular expressions at import,
    which brings re and enum, about a fifth of the CPU a health check may take.
    The C scanner json.decoder wraps needs neither; where it is missing (an
    interpreter other than CPython), json.loads is used.
    """
    try:
        from _json import make_scanner
    except ImportError:  # pragma: no cover - CPython always has it
        import json

        return json.loads(raw)
    text = raw.decode("utf-8")
    start = len(text) - len(text.lstrip(_JSON_SPACE))
    try:
        scan = make_scanner(_Decoding())  # type: ignore[arg-type]  # typeshed: a JSONDecoder
        value, end = scan(text, start)
    except StopIteration:
        raise ValueError(f"no JSON value at character {start}") from None
    except RecursionError:  # json.loads raises it too: a state file is never that deep
        raise ValueError("nested too deeply") from None
    except SystemError:
        # The scanner raises its syntax errors as json.decoder.JSONDecodeError, which
        # it looks up in sys.modules only: with json.decoder not imported it fails
        # with SystemError instead. Import it, and ask again for the real error.
        if "json.decoder" in sys.modules:
            raise
        import json.decoder

        return loads(raw)
    if text[end:].strip(_JSON_SPACE):
        raise ValueError(f"extra data at character {end}")
    return value


def is_entrypoint(pid: int) -> bool:
    """Whether `pid` runs this program (a console script, `-m entrypoint`, the bundle)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            words = handle.read().split(b"\0")
    except OSError:
        return False
    for index, word in enumerate(words[:4]):
        name = os.path.basename(word)
        if name == b"entrypoint" or word.endswith(b"entrypoint/__main__.py"):
            return True
        if word == b"-m" and index + 1 < len(words) and words[index + 1] == b"entrypoint":
            return True
    return False


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_trusted(path: str) -> State:
    """The state of a live supervisor at `path` or its fallback; Untrusted saying why not."""
    reasons = []
    for candidate in candidates(path):
        try:
            state = _read_one(candidate)
        except FileNotFoundError:
            continue
        except Untrusted as exc:
            reasons.append(str(exc))
            continue
        pid = state.supervisor_pid
        if (
            not isinstance(pid, int)
            or pid <= 0
            or not alive(pid)
            or (state.supervisor_start and process_start(pid) != state.supervisor_start)
        ):
            reasons.append(f"supervisor pid {pid} is not running (stale state file)")
        elif not is_entrypoint(pid):
            reasons.append(f"pid {pid} named by the state file is not an entrypoint supervisor")
        else:
            return state
    if not reasons:
        raise Untrusted(f"no supervisor state at {path} (not started yet, or not supervised)")
    raise Untrusted(reasons[0])


def heartbeat_age(state: State, now: float | None = None) -> float | None:
    """Seconds since the later of the child's start and its last heartbeat (None: no source).

    A missing heartbeat file is "no heartbeat since the start".
    """
    if not (state.notify or state.heartbeat_file) or state.child_started is None:
        return None
    now = time.time() if now is None else now
    beats = [state.child_started]
    if state.notify and state.heartbeat is not None:
        beats.append(state.heartbeat)
    if state.heartbeat_file and (mtime := _mtime(state.heartbeat_file)) is not None:
        beats.append(mtime)
    return max(0.0, now - max(beats))


def _mtime(path: str) -> float | None:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None
