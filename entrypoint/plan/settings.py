"""Settings from flags, the environment, an optional TOML file and the defaults.

Pure: `load` takes the three sources as plain mappings and returns a frozen
`Settings`, or raises one error that lists every problem found. Precedence is
flag > environment > file > default, option by option.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from entrypoint.errors import ConfigError, UsageError
from entrypoint.plan.redact import MASK, is_secret_name, redact_text

BUILTIN_MODES = ("web", "worker", "scheduler")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("auto", "json", "console")
DEFAULT_STATE_FILE = "/tmp/entrypoint-state.json"  # noqa: S108 - the contract's default
_MODE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


class Invalid(ValueError):
    """A value that does not parse; the message says what is wrong with it."""


def parse_seconds(value: object) -> float:
    """`25`, `2.5`, `25s`, `500ms`, `2m`, `1h` -> seconds; finite and >= 0."""
    if isinstance(value, bool):
        raise Invalid("not a number of seconds")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = str(value).strip().lower()
        scale = 1.0
        for suffix, factor in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
            if text.endswith(suffix):
                text, scale = text[: -len(suffix)].strip(), factor
                break
        try:
            seconds = float(text) * scale
        except ValueError:
            raise Invalid("not a number of seconds") from None
    if not math.isfinite(seconds):
        raise Invalid("not a finite number of seconds")
    if seconds < 0:
        raise Invalid("must not be negative")
    return seconds


def parse_positive_seconds(value: object) -> float:
    seconds = parse_seconds(value)
    if seconds <= 0:
        raise Invalid("must be greater than 0")
    return seconds


def parse_count(value: object) -> int:
    if isinstance(value, bool):
        raise Invalid("not a whole number")
    text = str(value).strip()
    if not re.fullmatch(r"\+?[0-9]+", text):
        raise Invalid("not a whole number >= 0")
    return int(text)


def parse_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise Invalid("not a boolean (use 1/0, true/false, yes/no, on/off)")


def parse_signal_option(value: object) -> int | None:
    from entrypoint.runtime.signals import parse_signal

    text = str(value).strip()
    if not text:
        return None
    try:
        return parse_signal(text)
    except ValueError as exc:
        raise Invalid(str(exc)) from None


def parse_choice(choices: tuple[str, ...]) -> Callable[[object], str]:
    def parse(value: object) -> str:
        text = str(value).strip().lower()
        if text == "warn":
            text = "warning"
        if text not in choices:
            raise Invalid(f"must be one of {', '.join(choices)}")
        return text

    return parse


def parse_command(value: object) -> tuple[str, ...] | None:
    """A command: a list from the file, or a string split like a shell splits words."""
    if isinstance(value, list | tuple):
        if not all(isinstance(word, str) for word in value):
            raise Invalid("a command list must hold only strings")
        words = tuple(value)
    else:
        try:
            words = tuple(shlex.split(str(value)))
        except ValueError as exc:
            raise Invalid(f"cannot be split into words ({exc})") from None
    return words or None


def parse_text(value: object) -> str | None:
    text = str(value).strip()
    return text or None


def parse_list(value: object) -> tuple[str, ...]:
    if isinstance(value, list | tuple):
        items = [str(item).strip() for item in value]
    else:
        items = [item.strip() for item in str(value).split(",")]
    return tuple(item for item in items if item)


@dataclass(frozen=True)
class Option:
    """One setting: where it is read from, how it parses, its default."""

    name: str
    env: str
    parse: Callable[[object], Any]
    default: Any
    help: str
    flag: bool = True
    metavar: str = "TEXT"

    @property
    def flag_name(self) -> str:
        return "--" + self.name.replace("_", "-")


OPTIONS: tuple[Option, ...] = (
    Option("mode", "MODE", parse_text, None,
           "What to run: web, worker, scheduler or a custom mode.", metavar="MODE"),
    Option("config", "ENTRYPOINT_CONFIG", parse_text, None,
           "TOML file with settings and custom modes.", metavar="PATH"),
    Option("web_cmd", "WEB_CMD", parse_command, None, "Command of web mode (else CMD).",
           flag=False),
    Option("worker_cmd", "WORKER_CMD", parse_command, None, "Command of worker mode (else CMD).",
           flag=False),
    Option("scheduler_cmd", "SCHEDULER_CMD", parse_command, None,
           "Command of scheduler mode (else CMD).", flag=False),
    Option("stop_signal", "ENTRYPOINT_STOP_SIGNAL", parse_signal_option, None,
           "Signal sent to the child on stop instead of the one received (e.g. QUIT).",
           metavar="SIGNAL"),
    Option("stop_timeout", "ENTRYPOINT_STOP_TIMEOUT", parse_seconds, 25.0,
           "Seconds the child has to exit after a stop, then SIGKILL.", metavar="SECONDS"),
    Option("signal_group", "ENTRYPOINT_SIGNAL_GROUP", parse_bool, default=False, help=
           "Forward signals to the child's whole process group.", metavar="BOOL"),
    Option("min_uptime", "ENTRYPOINT_MIN_UPTIME", parse_seconds, 10.0,
           "A clean exit after this long restarts at once.", metavar="SECONDS"),
    Option("backoff_initial", "ENTRYPOINT_BACKOFF_INITIAL", parse_seconds, 1.0,
           "First restart delay after a failure.", metavar="SECONDS"),
    Option("backoff_max", "ENTRYPOINT_BACKOFF_MAX", parse_seconds, 60.0,
           "Longest restart delay.", metavar="SECONDS"),
    Option("reset_after", "ENTRYPOINT_RESET_AFTER", parse_seconds, 60.0,
           "Uptime after which the backoff starts over.", metavar="SECONDS"),
    Option("max_restarts", "ENTRYPOINT_MAX_RESTARTS", parse_count, 0,
           "Restarts allowed within the window before giving up (0: no limit).", metavar="N"),
    Option("restart_window", "ENTRYPOINT_RESTART_WINDOW", parse_positive_seconds, 600.0,
           "Window in which restarts are counted.", metavar="SECONDS"),
    Option("state_file", "ENTRYPOINT_STATE_FILE", parse_text, DEFAULT_STATE_FILE,
           "Where the supervisor writes its state for `health`.", metavar="PATH"),
    Option("wait_timeout", "ENTRYPOINT_WAIT_TIMEOUT", parse_seconds, 60.0,
           "How long to wait for dependencies (0: check once).", metavar="SECONDS"),
    Option("probe_timeout", "ENTRYPOINT_PROBE_TIMEOUT", parse_positive_seconds, 3.0,
           "Timeout of one probe attempt.", metavar="SECONDS"),
    Option("wait_for", "ENTRYPOINT_WAIT_FOR", parse_list, (),
           "More dependencies to wait for, comma-separated URLs.", metavar="URLS"),
    Option("lease_url", "ENTRYPOINT_LEASE_URL", parse_text, None,
           "Where singleton modes hold their leader lease (default: the queue URL).",
           metavar="URL"),
    Option("lease_key", "ENTRYPOINT_LEASE_KEY", parse_text, None,
           "Lease key (default entrypoint:lease:<mode>).", metavar="KEY"),
    Option("lease_ttl", "ENTRYPOINT_LEASE_TTL", parse_positive_seconds, 15.0,
           "Lease time to live.", metavar="SECONDS"),
    Option("health_url", "ENTRYPOINT_HEALTH_URL", parse_text, None,
           "What `health` probes in exec modes (http://, https://, tcp://).", metavar="URL"),
    Option("log_format", "ENTRYPOINT_LOG_FORMAT", parse_choice(LOG_FORMATS), "auto",
           "auto (JSON unless stderr is a TTY), json or console.", metavar="FORMAT"),
    Option("log_level", "ENTRYPOINT_LOG_LEVEL", parse_choice(LOG_LEVELS), "info",
           "debug, info, warning, error or critical.", metavar="LEVEL"),
)  # fmt: skip
OPTION_BY_NAME = {option.name: option for option in OPTIONS}
# Options a mode table of the config file may override for that mode only.
MODE_OVERRIDES = (
    "stop_signal", "stop_timeout", "signal_group", "min_uptime", "backoff_initial",
    "backoff_max", "reset_after", "max_restarts", "restart_window", "wait_timeout",
    "probe_timeout", "wait_for", "lease_url", "lease_key", "lease_ttl", "health_url",
)  # fmt: skip


@dataclass(frozen=True)
class ModeConfig:
    """A mode defined (or a built-in one adjusted) in the config file."""

    name: str
    command: tuple[str, ...] | None = None
    supervise: bool | None = None
    singleton: bool | None = None
    wait: bool | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Settings:
    mode: str = "web"
    config: str | None = None
    web_cmd: tuple[str, ...] | None = None
    worker_cmd: tuple[str, ...] | None = None
    scheduler_cmd: tuple[str, ...] | None = None
    stop_signal: int | None = None
    stop_timeout: float = 25.0
    signal_group: bool = False
    min_uptime: float = 10.0
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    reset_after: float = 60.0
    max_restarts: int = 0
    restart_window: float = 600.0
    state_file: str = DEFAULT_STATE_FILE
    wait_timeout: float = 60.0
    probe_timeout: float = 3.0
    wait_for: tuple[str, ...] = ()
    lease_url: str | None = None
    lease_key: str | None = None
    lease_ttl: float = 15.0
    health_url: str | None = None
    log_format: str = "auto"
    log_level: str = "info"
    command: tuple[str, ...] = ()
    modes: Mapping[str, ModeConfig] = field(default_factory=dict)
    custom_cmd: tuple[str, ...] | None = None
    sources: Mapping[str, str] = field(default_factory=dict)


def valid_modes(modes: Mapping[str, ModeConfig]) -> tuple[str, ...]:
    """The built-in modes, then the config file's own, by name."""
    return BUILTIN_MODES + tuple(sorted(set(modes) - set(BUILTIN_MODES)))


def normalize_mode(value: str | None) -> str:
    """MODE as the contract reads it: blanks trimmed, case folded, empty is web."""
    text = (value or "").strip().lower()
    return text or "web"


def command_variable(mode: str) -> str:
    """The variable that holds a mode's command: WEB_CMD, WORKER_CMD, HORIZON_CMD..."""
    return re.sub(r"[^A-Z0-9]", "_", mode.upper()) + "_CMD"


def _shown(name: str, value: object) -> str:
    if is_secret_name(name):
        return MASK
    return redact_text(str(value))


def _parse_modes(data: object, problems: list[str], where: str) -> dict[str, ModeConfig]:
    if not isinstance(data, Mapping):
        problems.append(f"{where}: [modes] must be a table of mode tables")
        return {}
    modes: dict[str, ModeConfig] = {}
    for raw_name, table in data.items():
        name = normalize_mode(str(raw_name))
        label = f"{where}: [modes.{raw_name}]"
        if not _MODE_NAME.match(name):
            problems.append(f"{label}: a mode name is letters, digits, '-' and '_'")
            continue
        if not isinstance(table, Mapping):
            problems.append(f"{label}: must be a table")
            continue
        command = supervise = singleton = wait = None
        overrides: dict[str, Any] = {}
        for key, value in table.items():
            try:
                if key == "command":
                    command = parse_command(value)
                elif key == "run":
                    run = str(value).strip().lower()
                    if run not in ("exec", "supervise"):
                        raise Invalid("must be exec or supervise")
                    supervise = run == "supervise"
                elif key == "singleton":
                    singleton = parse_bool(value)
                elif key == "wait":
                    wait = parse_bool(value)
                elif key in MODE_OVERRIDES:
                    overrides[key] = OPTION_BY_NAME[key].parse(value)
                else:
                    raise Invalid("unknown key")
            except Invalid as exc:
                problems.append(f"{label} {key}={_shown(key, value)}: {exc}")
        if name not in BUILTIN_MODES and command is None and supervise is None:
            problems.append(f"{label}: a custom mode needs `command` or `run`")
        modes[name] = ModeConfig(name, command, supervise, singleton, wait, overrides)
    return modes


def load(
    *,
    flags: Mapping[str, object],
    env: Mapping[str, str],
    file: Mapping[str, Any] | None = None,
    file_path: str | None = None,
    command: tuple[str, ...] = (),
) -> Settings:
    """Settle every option; raise UsageError (bad MODE) or ConfigError listing all problems.

    `flags` holds only the options given on the command line (by option name),
    `env` the process environment, `file` the parsed TOML file, if any.
    """
    problems: list[str] = []
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    where = f"ENTRYPOINT_CONFIG={file_path}" if file_path else "config file"
    file = dict(file or {})
    modes = _parse_modes(file.pop("modes", {}), problems, where)
    for key in file:
        if key not in OPTION_BY_NAME or key == "config":
            problems.append(f"{where}: unknown key {key!r}")  # noqa: PERF401 - reads better
    for option in OPTIONS:
        if option.name in flags and flags[option.name] is not None:
            raw, label = flags[option.name], option.flag_name
        elif option.env in env:
            raw, label = env[option.env], option.env
        elif option.name in file:
            raw, label = file[option.name], f"{where}: {option.name}"
        else:
            values[option.name] = option.default
            sources[option.name] = "default"
            continue
        try:
            values[option.name] = option.parse(raw)
            sources[option.name] = label
        except Invalid as exc:
            problems.append(f"{label}={_shown(option.env, raw)}: {exc}")
            values[option.name] = option.default

    mode = normalize_mode(values["mode"])
    values["mode"] = mode
    valid = valid_modes(modes)
    custom_cmd = None
    if mode not in valid:
        label = sources["mode"] if sources["mode"] != "default" else "MODE"
        raw_mode = flags.get("mode") or env.get("MODE") or file.get("mode")
        message = f"unknown {label} {str(raw_mode).strip()!r}; valid modes: {', '.join(valid)}"
        raise UsageError("; ".join([message, *problems]))
    if mode not in BUILTIN_MODES:
        variable = command_variable(mode)
        if variable in env:
            try:
                custom_cmd = parse_command(env[variable])
            except Invalid as exc:
                problems.append(f"{variable}: {exc}")
    if values["backoff_initial"] > values["backoff_max"]:
        problems.append(
            f"ENTRYPOINT_BACKOFF_INITIAL ({values['backoff_initial']:g} s) is longer than "
            f"ENTRYPOINT_BACKOFF_MAX ({values['backoff_max']:g} s)"
        )
    if problems:
        raise ConfigError(problems)
    return Settings(**values, command=command, modes=modes, custom_cmd=custom_cmd, sources=sources)


def read_config_file(path: str) -> dict[str, Any]:
    """Parse the TOML file at `path`; ConfigError naming the path and the problem."""
    import tomllib

    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"ENTRYPOINT_CONFIG={path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"ENTRYPOINT_CONFIG={path}: is a directory, not a file") from None
    except PermissionError:
        raise ConfigError(f"ENTRYPOINT_CONFIG={path}: permission denied") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"ENTRYPOINT_CONFIG={path}: not valid TOML ({exc})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"ENTRYPOINT_CONFIG={path}: not valid TOML (not UTF-8)") from None
