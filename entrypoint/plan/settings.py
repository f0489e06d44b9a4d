"""Settings from flags, the environment, an optional TOML file and the defaults.

Pure: `load` takes what the command line, the environment and the files held
(an `Inputs`) and returns one frozen `Settings`, settled for the selected mode,
or raises one error that lists every problem found. Option by option, the
value with the highest `Source` wins: flag > environment > the mode's table in
the file > the file's top level > the default. The dependencies (QUEUE_*,
REDIS_*, DB_*, ENTRYPOINT_WAIT_FOR, the lease's store) are resolved here too,
once; nothing reads the environment again after `load`.

Builtins only (see records.py): web mode loads every setting before its exec.
"""

from __future__ import annotations

from entrypoint import logline
from entrypoint.errors import ConfigError, UsageError, one_line, quoted
from entrypoint.plan import values as v
from entrypoint.plan.deps import Resolution, resolve
from entrypoint.plan.modes import BUILTIN_MODES, ModeSpec, Run, command_variable
from entrypoint.plan.policy import Restart
from entrypoint.plan.urls import Dependency, parse_url
from entrypoint.records import IntEnum, dataclass, field, replace

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

    from entrypoint.plan.depth import DepthSpec
    from entrypoint.plan.modes import Plan

DEFAULT_STATE_FILE = "/tmp/entrypoint-state.json"  # noqa: S108 - the contract's default
LOG_FORMATS = ("auto", "json", "console")
LOG_LEVELS = tuple(logline.LEVELS)
# Variables a leader's flag must never replace: the child needs them for something else.
RESERVED_NAMES = frozenset((
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "PWD", "OLDPWD", "TERM", "LANG", "HOSTNAME",
    "TZ", "TMPDIR", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID",
    "PYTHONPATH", "PYTHONHOME", "NODE_OPTIONS", "MODE", "QUEUE_URL", "QUEUE_CONNECTION",
))  # fmt: skip
_MODE_NAME_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_-"


class Source(IntEnum):
    """Where a setting's value came from, in increasing precedence."""

    DEFAULT = 0
    FILE = 1  # the config file's top level
    MODE_TABLE = 2  # the selected mode's [modes.NAME] table
    ENV = 3
    FLAG = 4


@dataclass(frozen=True)
class Origin:
    source: Source
    label: str  # how a person names it: ENTRYPOINT_STOP_TIMEOUT, --stop-timeout, ...


def parse_size_text(value: object) -> str | None:
    """ENTRYPOINT_MAX_RSS, checked for its form; a percentage is resolved at start (cgroup)."""
    from entrypoint.plan.sizes import check_size

    text = str(value).strip()
    if not text:
        return None
    try:
        check_size(text)
    except ValueError as exc:
        raise v.Invalid(str(exc)) from None
    return text


def parse_metrics_addr(value: object) -> tuple[str, int] | None:
    """`9464`, `:9464`, `127.0.0.1:9464`, `[::1]:9464` -> (host, port); host "" is every one."""
    from entrypoint.plan.addresses import parse_listen_address

    if not str(value).strip():
        return None
    try:
        return parse_listen_address(str(value), source="")
    except ValueError as exc:
        raise v.Invalid(str(exc).removeprefix(": ")) from None


_restart_choice = v.choice(tuple(Restart), {"on_failure": "on-failure", "no": "never"})


def parse_restart(value: object) -> Restart:
    return Restart(_restart_choice(value))


def parse_leader_env(value: object) -> str:
    name = v.parse_variable_name(value)
    if name in RESERVED_NAMES or name.startswith(("ENTRYPOINT_", "LD_")):
        raise v.Invalid(f"{name} is a variable the child needs for something else")
    return name


@dataclass(frozen=True)
class Option:
    """One setting: where it is read from, how it parses, its default (the only one)."""

    name: str
    env: str
    parse: Callable[[object], Any]
    default: Any
    help: str
    flag: bool = True
    metavar: str = "TEXT"
    per_mode: bool = False  # a [modes.NAME] table may set it for that mode
    secret_file: bool = False  # X_FILE holds the value (a secret) instead of X

    @property
    def flag_name(self) -> str:
        return "--" + self.name.replace("_", "-")


OPTIONS: tuple[Option, ...] = (
    Option("mode", "MODE", v.parse_text, None,
           "What to run: web, worker, scheduler or a custom mode.", metavar="MODE"),
    Option("mode_var", "ENTRYPOINT_MODE_VAR", v.parse_variable_name, "MODE",
           "The variable the mode is read from (e.g. LYCHEE_MODE).", flag=False),
    Option("config", "ENTRYPOINT_CONFIG", v.parse_text, None,
           "TOML file with settings and custom modes.", metavar="PATH"),
    Option("web_cmd", "WEB_CMD", v.split_command, None, "Command of web mode (else CMD).",
           flag=False),
    Option("worker_cmd", "WORKER_CMD", v.split_command, None,
           "Command of worker mode (else CMD).", flag=False),
    Option("scheduler_cmd", "SCHEDULER_CMD", v.split_command, None,
           "Command of scheduler mode (else CMD).", flag=False),
    Option("stop_signal", "ENTRYPOINT_STOP_SIGNAL", v.parse_signal, None,
           "Signal sent to the child on stop instead of the one received (e.g. QUIT).",
           metavar="SIGNAL", per_mode=True),
    Option("stop_timeout", "ENTRYPOINT_STOP_TIMEOUT", v.parse_seconds, 25.0,
           "Seconds the child has to exit after a stop, then SIGKILL.", metavar="SECONDS",
           per_mode=True),
    Option("signal_group", "ENTRYPOINT_SIGNAL_GROUP", v.parse_bool, default=False, help=
           "Forward signals to the child's whole process group.", metavar="BOOL", per_mode=True),
    Option("restart", "ENTRYPOINT_RESTART", parse_restart, Restart.ALWAYS,
           "always, on-failure (exit 0 ends the entrypoint) or never.", metavar="POLICY",
           per_mode=True),
    Option("min_uptime", "ENTRYPOINT_MIN_UPTIME", v.parse_seconds, 10.0,
           "A clean exit after this long restarts at once.", metavar="SECONDS", per_mode=True),
    Option("backoff_initial", "ENTRYPOINT_BACKOFF_INITIAL", v.parse_seconds, 1.0,
           "First restart delay after a failure.", metavar="SECONDS", per_mode=True),
    Option("backoff_max", "ENTRYPOINT_BACKOFF_MAX", v.parse_seconds, 60.0,
           "Longest restart delay.", metavar="SECONDS", per_mode=True),
    Option("reset_after", "ENTRYPOINT_RESET_AFTER", v.parse_seconds, 60.0,
           "Uptime after which the backoff starts over.", metavar="SECONDS", per_mode=True),
    Option("max_restarts", "ENTRYPOINT_MAX_RESTARTS", v.parse_count, 0,
           "Restarts allowed within the window before giving up (0: no limit).", metavar="N",
           per_mode=True),
    Option("restart_window", "ENTRYPOINT_RESTART_WINDOW", v.parse_positive_seconds, 600.0,
           "Window in which restarts are counted.", metavar="SECONDS", per_mode=True),
    Option("state_file", "ENTRYPOINT_STATE_FILE", v.parse_text, DEFAULT_STATE_FILE,
           "Where the supervisor writes its state for `health`.", metavar="PATH"),
    Option("wait_timeout", "ENTRYPOINT_WAIT_TIMEOUT", v.parse_seconds, 60.0,
           "How long to wait for dependencies (0: check once).", metavar="SECONDS",
           per_mode=True),
    Option("probe_timeout", "ENTRYPOINT_PROBE_TIMEOUT", v.parse_positive_seconds, 3.0,
           "Timeout of one probe attempt.", metavar="SECONDS", per_mode=True),
    Option("wait_for", "ENTRYPOINT_WAIT_FOR", v.parse_url_list, (),
           "More dependencies to wait for, comma-separated URLs.", metavar="URLS",
           per_mode=True, secret_file=True),
    Option("lease_url", "ENTRYPOINT_LEASE_URL", v.parse_text, None,
           "Where singleton modes hold their leader lease (default: the queue URL).",
           metavar="URL", per_mode=True, secret_file=True),
    Option("lease_key", "ENTRYPOINT_LEASE_KEY", v.parse_text, None,
           "Lease key (default entrypoint:lease:<mode>).", metavar="KEY", per_mode=True),
    Option("lease_ttl", "ENTRYPOINT_LEASE_TTL", v.at_most(86400, v.parse_positive_seconds), 15.0,
           "Lease time to live.", metavar="SECONDS", per_mode=True),
    Option("leader_env", "ENTRYPOINT_LEADER_ENV", parse_leader_env, None,
           "Every replica runs; the lease holder's child gets NAME=true, the others NAME=false.",
           metavar="NAME", per_mode=True),
    Option("handoff", "ENTRYPOINT_HANDOFF", v.parse_bool, default=False, help=
           "Yield to a developer's `entrypoint handoff --store` through the queue's store.",
           metavar="BOOL", per_mode=True),
    Option("handoff_key", "ENTRYPOINT_HANDOFF_KEY", v.parse_text, None,
           "Handoff lease key (default entrypoint:handoff:<mode>).", metavar="KEY",
           per_mode=True),
    Option("notify", "ENTRYPOINT_NOTIFY", v.parse_bool, default=False, help=
           "Give the child NOTIFY_SOCKET (sd_notify: READY=1, WATCHDOG=1, STATUS=...).",
           metavar="BOOL", per_mode=True),
    Option("heartbeat_file", "ENTRYPOINT_HEARTBEAT_FILE", v.parse_text, None,
           "A file the worker touches; its mtime is a heartbeat.", metavar="PATH",
           per_mode=True),
    Option("watchdog_timeout", "ENTRYPOINT_WATCHDOG_TIMEOUT", v.parse_seconds, 0.0,
           "Restart the child after this long without a heartbeat (0: off).", metavar="SECONDS",
           per_mode=True),
    Option("ready_timeout", "ENTRYPOINT_READY_TIMEOUT", v.parse_seconds, 0.0,
           "Restart the child when READY=1 does not come this long after its start (0: off).",
           metavar="SECONDS", per_mode=True),
    Option("heartbeat_max_age", "ENTRYPOINT_HEARTBEAT_MAX_AGE", v.parse_seconds, 0.0,
           "`health` fails past this heartbeat age when no watchdog is set (0: off).",
           metavar="SECONDS", per_mode=True),
    Option("max_rss", "ENTRYPOINT_MAX_RSS", parse_size_text, None,
           "Recycle the child above this summed RSS of its group (512M, 1G, 90%).",
           metavar="SIZE", per_mode=True),
    Option("memory_interval", "ENTRYPOINT_MEMORY_INTERVAL", v.parse_positive_seconds, 5.0,
           "How often the RSS is read while ENTRYPOINT_MAX_RSS is set.", metavar="SECONDS",
           per_mode=True),
    Option("metrics_addr", "ENTRYPOINT_METRICS_ADDR", parse_metrics_addr, None,
           "Serve Prometheus metrics at GET /metrics on this address (9464, 127.0.0.1:9464).",
           metavar="ADDRESS", per_mode=True),
    Option("queue_depth", "ENTRYPOINT_QUEUE_DEPTH", v.parse_text, None,
           "Queues whose depth to read: laravel:default, rq:default, celery:celery, "
           "sidekiq:default, bullmq:NAME.", metavar="QUEUES", per_mode=True),
    Option("strict", "ENTRYPOINT_STRICT", v.parse_bool, default=False, help=
           "Unknown ENTRYPOINT_* variables and a short stop budget are errors (78).",
           metavar="BOOL"),
    Option("health_url", "ENTRYPOINT_HEALTH_URL", v.parse_text, None,
           "What `health` probes in exec modes (http://, https://, tcp://).", metavar="URL",
           per_mode=True),
    Option("log_format", "ENTRYPOINT_LOG_FORMAT", v.choice(LOG_FORMATS), "auto",
           "auto (JSON unless stderr is a TTY), json or console.", metavar="FORMAT"),
    Option("log_level", "ENTRYPOINT_LOG_LEVEL", v.choice(LOG_LEVELS, {"warn": "warning"}), "info",
           "debug, info, warning, error or critical.", metavar="LEVEL"),
)  # fmt: skip
OPTION_BY_NAME = {option.name: option for option in OPTIONS}
# Connection variables that may also come from a file (X_FILE), beside the options above.
SECRET_FILE_VARIABLES = (
    "QUEUE_URL", "REDIS_URL", "REDIS_PASSWORD", "DB_URL", "DB_PASSWORD",
    *(option.env for option in OPTIONS if option.secret_file),
)  # fmt: skip
# ENTRYPOINT_* names that are not options of `run` but are read by someone.
_OTHER_KNOWN = ("ENTRYPOINT_HANDOFF_SERVICE", "ENTRYPOINT_HANDOFF_COMPOSE_FILE", "ENTRYPOINT_IMAGE")
KNOWN_VARIABLES = frozenset((
    *(option.env for option in OPTIONS if option.env.startswith("ENTRYPOINT_")),
    *(f"{name}_FILE" for name in SECRET_FILE_VARIABLES if name.startswith("ENTRYPOINT_")),
    *_OTHER_KNOWN,
))  # fmt: skip


@dataclass(frozen=True)
class Inputs:
    """What `load` reads: the command line, the environment and the files, as values.

    `env` already holds the values read from X_FILE files (under X); `labels`
    names where such a value came from (`QUEUE_URL` -> `QUEUE_URL_FILE`), and
    `secrets` holds their contents. `problems` are those found while reading.
    """

    env: Mapping[str, str]
    flags: Mapping[str, object] = field(default_factory=dict)
    file: Mapping[str, Any] | None = None
    file_path: str | None = None
    command: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModeConfig:
    """A mode defined (or a built-in one adjusted) in the config file."""

    name: str
    command: tuple[str, ...] | None = None
    run: Run | None = None
    singleton: bool | None = None
    wait: bool | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Unknown:
    """An ENTRYPOINT_* variable no one reads (a typo, most likely)."""

    name: str
    closest: str | None

    @property
    def message(self) -> str:
        hint = f" (did you mean {self.closest}?)" if self.closest else ""
        return f"{self.name} is not a known variable{hint}"


@dataclass(frozen=True)
class Settings:
    """Every option, settled for `mode`, with where each value came from."""

    mode: str
    mode_var: str
    config: str | None
    web_cmd: tuple[str, ...] | None
    worker_cmd: tuple[str, ...] | None
    scheduler_cmd: tuple[str, ...] | None
    stop_signal: int | None
    stop_timeout: float
    signal_group: bool
    restart: Restart
    min_uptime: float
    backoff_initial: float
    backoff_max: float
    reset_after: float
    max_restarts: int
    restart_window: float
    state_file: str
    wait_timeout: float
    probe_timeout: float
    wait_for: tuple[str, ...]
    lease_url: str | None
    lease_key: str | None
    lease_ttl: float
    leader_env: str | None
    handoff: bool
    handoff_key: str | None
    notify: bool
    heartbeat_file: str | None
    watchdog_timeout: float
    ready_timeout: float
    heartbeat_max_age: float
    max_rss: str | None
    memory_interval: float
    metrics_addr: tuple[str, int] | None
    queue_depth: str | None
    strict: bool
    health_url: str | None
    log_format: str
    log_level: str
    spec: ModeSpec
    origins: Mapping[str, Origin]
    command: tuple[str, ...] = ()  # CMD
    custom_cmd: tuple[str, ...] | None = None  # <MODE>_CMD of a custom mode
    modes: Mapping[str, ModeConfig] = field(default_factory=dict)
    resolution: Resolution = field(default_factory=Resolution)
    lease_store: Dependency | None = None  # ENTRYPOINT_LEASE_URL, parsed
    health: Dependency | None = None  # ENTRYPOINT_HEALTH_URL, parsed
    depth_specs: tuple[DepthSpec, ...] = ()  # ENTRYPOINT_QUEUE_DEPTH, parsed
    unknown: tuple[Unknown, ...] = ()
    secrets: tuple[str, ...] = ()  # contents of X_FILE files

    def origin(self, name: str) -> Origin:
        return self.origins.get(name, Origin(Source.DEFAULT, "default"))


def defaults(**changes: Any) -> Settings:
    """The settings of an empty environment (web mode), with `changes`: for tests and tools."""
    return replace(load(Inputs(env={})), **changes)


def default_plan(mode: str = "worker", command: tuple[str, ...] = ("true",)) -> Plan:
    """The plan of an environment that sets only MODE: the defaults, as values (tools, tests)."""
    from entrypoint.plan.modes import build_plan

    return build_plan(load(Inputs(env={"MODE": mode}, command=command)))


def valid_modes(modes: Mapping[str, ModeConfig]) -> tuple[str, ...]:
    """The built-in modes, then the config file's own, by name."""
    return tuple(BUILTIN_MODES) + tuple(sorted(set(modes) - set(BUILTIN_MODES)))


def normalize_mode(value: str | None) -> str:
    """MODE as the contract reads it: blanks trimmed, case folded, empty is web."""
    text = (value or "").strip().lower()
    return text or "web"


def shown(name: str, value: object) -> str:
    from entrypoint.plan.redact import shown as redacted

    return redacted(name, value)


def _mode_name_ok(name: str) -> bool:
    return (
        0 < len(name) <= 63
        and name[0].isascii()
        and name[0].isalpha()
        and all(c in _MODE_NAME_CHARS for c in name)
    )


def _parse_modes(data: object, problems: list[str], where: str) -> dict[str, ModeConfig]:
    if not isinstance(data, dict):
        problems.append(f"{where}: [modes] must be a table of mode tables")
        return {}
    modes: dict[str, ModeConfig] = {}
    for raw_name, table in data.items():
        name = normalize_mode(str(raw_name))
        label = f"{where}: [modes.{quoted(str(raw_name))}]"
        if not _mode_name_ok(name):
            problems.append(f"{label}: a mode name is a letter, then letters, digits, - and _")
            continue
        if not isinstance(table, dict):
            problems.append(f"{label}: must be a table")
            continue
        config = ModeConfig(name)
        overrides: dict[str, Any] = {}
        for key, value in table.items():
            try:
                if key == "command":
                    config = replace(config, command=v.split_command(value))
                elif key == "run":
                    run = str(value).strip().lower()
                    if run not in tuple(Run):
                        raise v.Invalid("must be exec or supervise")
                    config = replace(config, run=Run(run))
                elif key == "singleton":
                    config = replace(config, singleton=v.parse_bool(value))
                elif key == "wait":
                    config = replace(config, wait=v.parse_bool(value))
                elif key in OPTION_BY_NAME and OPTION_BY_NAME[key].per_mode:
                    overrides[key] = OPTION_BY_NAME[key].parse(value)
                else:
                    raise v.Invalid("unknown key")
            except v.Invalid as exc:
                problems.append(f"{label} {quoted(str(key))}={shown(str(key), value)}: {exc}")
        if name not in BUILTIN_MODES and config.command is None and config.run is None:
            problems.append(f"{label}: a custom mode needs `command` or `run`")
        modes[name] = replace(config, overrides=overrides)
    return modes


def mode_spec(mode: str, modes: Mapping[str, ModeConfig]) -> ModeSpec:
    """How `mode` runs: a built-in's spec, adjusted by its table in the file, if any."""
    builtin = BUILTIN_MODES.get(mode)
    configured = modes.get(mode)
    if configured is None:
        assert builtin is not None  # load rejects any other mode
        return builtin
    run = configured.run or (builtin.run if builtin else Run.SUPERVISE)
    singleton = configured.singleton
    if singleton is None:
        singleton = builtin.singleton if builtin else False
    wait = configured.wait if configured.wait is not None else run is Run.SUPERVISE
    return ModeSpec(mode, run, singleton, wait)


def _closest(name: str) -> str | None:
    import difflib

    found = difflib.get_close_matches(name, sorted(KNOWN_VARIABLES), n=1, cutoff=0.6)
    return found[0] if found else None


def load(inputs: Inputs) -> Settings:
    """Settle every option; raise UsageError (bad MODE) or ConfigError listing all problems."""
    env, flags, labels = inputs.env, inputs.flags, inputs.labels
    problems: list[str] = list(inputs.problems)
    where = f"ENTRYPOINT_CONFIG={one_line(inputs.file_path)}" if inputs.file_path else "config file"
    file = dict(inputs.file or {})
    modes = _parse_modes(file.pop("modes", {}), problems, where)
    for key in file:
        if key not in OPTION_BY_NAME or key in ("config", "mode_var"):
            problems.append(f"{where}: unknown key {quoted(str(key))}")  # noqa: PERF401

    values: dict[str, Any] = {}
    origins: dict[str, Origin] = {}

    def settle(option: Option, env_name: str) -> None:
        if flags.get(option.name) is not None:
            raw, origin = flags[option.name], Origin(Source.FLAG, option.flag_name)
        elif env_name in env:
            raw, origin = env[env_name], Origin(Source.ENV, labels.get(env_name, env_name))
        elif option.name in file:
            raw, origin = file[option.name], Origin(Source.FILE, f"{where}: {option.name}")
        else:
            values[option.name] = option.default
            return
        try:
            values[option.name] = option.parse(raw)
            origins[option.name] = origin
        except v.Invalid as exc:
            problems.append(f"{origin.label}={shown(option.env, raw)}: {exc}")
            values[option.name] = option.default

    settle(OPTION_BY_NAME["mode_var"], "ENTRYPOINT_MODE_VAR")
    mode_var = values["mode_var"]
    for option in OPTIONS:
        if option.name != "mode_var":
            settle(option, mode_var if option.name == "mode" else option.env)

    mode = normalize_mode(values["mode"])
    valid = valid_modes(modes)
    if mode not in valid:
        label = origins["mode"].label if "mode" in origins else mode_var
        message = f"unknown {label} {quoted(str(values['mode']).strip())}; "
        raise UsageError("; ".join([message + f"valid modes: {', '.join(valid)}", *problems]))
    values["mode"] = mode
    spec = mode_spec(mode, modes)
    configured = modes.get(mode)
    for name, value in (configured.overrides if configured else {}).items():
        if origins.get(name, Origin(Source.DEFAULT, "")).source <= Source.FILE:
            values[name] = value
            origins[name] = Origin(Source.MODE_TABLE, f"{where}: [modes.{mode}] {name}")

    custom_cmd = None
    if mode not in BUILTIN_MODES and command_variable(mode) in env:
        variable = command_variable(mode)
        try:
            custom_cmd = v.split_command(env[variable])
        except v.Invalid as exc:
            problems.append(f"{variable}: {exc}")

    wait_label = origins["wait_for"].label if "wait_for" in origins else "ENTRYPOINT_WAIT_FOR"
    resolution = Resolution()
    try:
        resolution = resolve(env, values["wait_for"], wait_label=wait_label, labels=labels)
    except ConfigError as exc:
        problems.extend(exc.problems)
    lease_store = health = None
    for name, target in (("lease_url", "lease"), ("health_url", "health")):
        if values[name]:
            try:
                parsed = parse_url(values[name], origins[name].label)
            except ConfigError as exc:
                problems.extend(exc.problems)
            else:
                if target == "lease":
                    lease_store = parsed
                else:
                    health = parsed

    depth_specs = _depth_specs(values, origins, env, resolution, problems)
    problems += _cross_checks(values, spec)
    unknown = tuple(
        Unknown(name, _closest(name))
        for name in sorted(env)
        if name.startswith("ENTRYPOINT_") and name not in KNOWN_VARIABLES
    )
    if values["strict"]:
        problems += [f"{u.message} (ENTRYPOINT_STRICT=1)" for u in unknown]
    if problems:
        raise ConfigError(problems)
    return Settings(
        **values,
        spec=spec,
        origins=origins,
        command=inputs.command,
        custom_cmd=custom_cmd,
        modes=modes,
        resolution=resolution,
        lease_store=lease_store,
        health=health,
        depth_specs=depth_specs,
        unknown=unknown,
        secrets=inputs.secrets,
    )


def _depth_specs(
    values: Mapping[str, Any],
    origins: Mapping[str, Origin],
    env: Mapping[str, str],
    resolution: Resolution,
    problems: list[str],
) -> tuple[DepthSpec, ...]:
    """ENTRYPOINT_QUEUE_DEPTH's queues, checked against the queue's store."""
    if not values["queue_depth"]:
        return ()
    from entrypoint.plan.depth import parse_queue_depth, store_problem

    label = origins["queue_depth"].label
    try:
        specs = parse_queue_depth(values["queue_depth"], env, label)
    except ValueError as exc:
        problems.append(str(exc))
        return ()
    if resolution.queue is None:
        problems.append(
            f"{label}: the depth is read from the queue's store: set QUEUE_URL or QUEUE_CONNECTION"
        )
        return ()
    problem = store_problem(specs, str(resolution.queue.scheme), label)
    if problem:
        problems.append(problem)
    return specs


def _cross_checks(values: Mapping[str, Any], spec: ModeSpec) -> list[str]:
    """The problems that come from two settings together."""
    problems = []
    if values["backoff_initial"] > values["backoff_max"]:
        problems.append(
            f"ENTRYPOINT_BACKOFF_INITIAL ({values['backoff_initial']:g} s) is longer than "
            f"ENTRYPOINT_BACKOFF_MAX ({values['backoff_max']:g} s)"
        )
    heartbeat = values["notify"] or values["heartbeat_file"]
    if values["watchdog_timeout"] > 0 and not heartbeat:
        problems.append(
            "ENTRYPOINT_WATCHDOG_TIMEOUT needs a heartbeat source: "
            "set ENTRYPOINT_NOTIFY=1 or ENTRYPOINT_HEARTBEAT_FILE"
        )
    if values["ready_timeout"] > 0 and not values["notify"]:
        problems.append(
            "ENTRYPOINT_READY_TIMEOUT needs ENTRYPOINT_NOTIFY=1 (READY=1 comes through it)"
        )
    if values["leader_env"] and spec.singleton:
        problems.append(
            f"ENTRYPOINT_LEADER_ENV: mode {spec.name!r} already runs one replica at a time; "
            "the leader's flag is for modes where every replica runs"
        )
    return problems
