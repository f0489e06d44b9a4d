"""`ENTRYPOINT_QUEUE_DEPTH` -> the queues whose depth is read, and where their keys live.

Pure and builtins only (no `re`, no `dataclasses`, no `enum`): settings parse
it on every start, web mode's included, whose budget is a bare interpreter start.

An entry is `FRAMEWORK:QUEUE`, optionally followed by `?prefix=P` (the key
prefix the framework was configured with) and, for Laravel's database driver,
`table=T` (several options joined by `&`). The label of every series is the
entry as written. What each prefix means, per framework:

- laravel: the Redis connection's `prefix` option, prepended to every key
  (`<prefix>queues:NAME`). Without `?prefix=`: `REDIS_PREFIX` when set (even
  empty), else both defaults Laravel's skeleton has shipped are read and
  summed, from `APP_NAME` (default `laravel`): `laravel-database-` (skeletons
  since mid-2025) and `laravel_database_` (before), and no prefix at all.
- rq: `RQ_KEY_PREFIX` (keys `<prefix>:queue:NAME`); default `RQ_KEY_PREFIX`
  from the environment, as RQ reads it, else `rq`.
- celery: kombu's `global_keyprefix` transport option, prepended; default none.
- sidekiq: a namespace, prepended as written (`?prefix=myapp:`); default none.
- bullmq: BullMQ's `prefix` option (keys `<prefix>:NAME:wait`); default `bull`.
"""

from __future__ import annotations

from entrypoint.records import dataclass

# Not `typing.TYPE_CHECKING`: importing typing (or collections.abc) costs the
# fast path more than this whole module.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

FRAMEWORKS = ("laravel", "rq", "celery", "sidekiq", "bullmq")
FORMS = (
    "FRAMEWORK:QUEUE[?prefix=P] separated by commas, FRAMEWORK one of "
    + ", ".join(FRAMEWORKS)
    + " (e.g. laravel:default, rq:default, celery:celery, sidekiq:default, bullmq:emails)"
)
SOURCE = "ENTRYPOINT_QUEUE_DEPTH"
REDIS_SCHEMES = frozenset({"redis", "rediss"})
DATABASE_SCHEMES = frozenset({"postgresql", "mysql", "sqlite"})

_IDENTIFIER_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_IDENTIFIER_CHARS = _IDENTIFIER_START | frozenset("0123456789")
_FORBIDDEN_IN_QUEUE = frozenset(",?&")


@dataclass(frozen=True)
class DepthSpec:
    """One configured queue.

    `prefixes`: the key prefixes to read, summed (Laravel's guessed defaults
    are several; every other case is one). `table`: Laravel's database
    driver's table (read only when the store is a database).
    """

    label: str
    framework: str
    queue: str
    prefixes: tuple[str, ...]
    table: str = "jobs"


def _shown(value: str) -> str:
    return repr(value) if len(value) <= 60 else repr(value[:60] + "...")


def parse_queue_depth(
    value: str, env: Mapping[str, str] | None = None, source: str = SOURCE
) -> tuple[DepthSpec, ...]:
    """The entries of `value` in order; () when it is blank (the feature is off).

    `env` supplies the frameworks' own defaults (REDIS_PREFIX, APP_NAME,
    RQ_KEY_PREFIX, DB_QUEUE_TABLE). ValueError: one line naming `source`, the
    entry (escaped) and the accepted forms.
    """
    environ: Mapping[str, str] = env if env is not None else {}
    if not value.strip():
        return ()
    specs: list[DepthSpec] = []
    seen: set[str] = set()
    for index, raw in enumerate(value.split(",")):
        entry = raw.strip()
        if not entry:
            raise ValueError(f"{source}: entry {index + 1} is empty: expected {FORMS}")
        spec = _parse_entry(entry, environ, source)
        if spec.label in seen:
            raise ValueError(f"{source}: {_shown(entry)} is listed twice")
        seen.add(spec.label)
        specs.append(spec)
    return tuple(specs)


def _parse_entry(entry: str, env: Mapping[str, str], source: str) -> DepthSpec:
    head, has_query, query = entry.partition("?")
    framework_text, colon, queue = head.partition(":")
    framework = framework_text.strip().lower()
    if framework not in FRAMEWORKS:
        raise ValueError(f"{source}: {_shown(entry)}: unknown framework: expected {FORMS}")
    if not colon or not queue:
        raise ValueError(f"{source}: {_shown(entry)}: no queue name: expected {FORMS}")
    bad = [c for c in queue if c in _FORBIDDEN_IN_QUEUE or not c.isprintable() or c.isspace()]
    if bad:
        raise ValueError(f"{source}: {_shown(entry)}: the queue name holds {_shown(bad[0])}")
    if framework == "bullmq" and ":" in queue:
        raise ValueError(f"{source}: {_shown(entry)}: a BullMQ queue name cannot contain ':'")
    options = _options(query, entry, source) if has_query else {}
    if "table" in options and framework != "laravel":
        raise ValueError(f"{source}: {_shown(entry)}: table= is for Laravel's database driver only")
    table = options.get("table", env.get("DB_QUEUE_TABLE") or "jobs")
    if not _is_table_name(table):
        raise ValueError(
            f"{source}: {_shown(entry)}: the table {_shown(table)} is not a table name "
            "(letters, digits, _; schema.table allowed)"
        )
    prefix = options.get("prefix")
    prefixes = (prefix,) if prefix is not None else default_prefixes(framework, env)
    return DepthSpec(entry, framework, queue, prefixes, table)


def _options(query: str, entry: str, source: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for part in query.split("&"):
        name, equals, setting = part.partition("=")
        if not equals or name not in ("prefix", "table"):
            raise ValueError(
                f"{source}: {_shown(entry)}: unknown option {_shown(part)}: "
                "expected prefix=P or table=T"
            )
        if name in found:
            raise ValueError(f"{source}: {_shown(entry)}: {name}= is given twice")
        if any(not c.isprintable() or c.isspace() for c in setting):
            raise ValueError(f"{source}: {_shown(entry)}: {name}= holds a blank or control char")
        found[name] = setting
    return found


def _is_table_name(name: str) -> bool:
    parts = name.split(".")
    return len(parts) <= 2 and all(
        part and part[0] in _IDENTIFIER_START and all(c in _IDENTIFIER_CHARS for c in part)
        for part in parts
    )


def default_prefixes(framework: str, env: Mapping[str, str]) -> tuple[str, ...]:
    """The key prefixes a framework uses when none is written in the entry."""
    if framework == "laravel":
        if "REDIS_PREFIX" in env:
            return (env["REDIS_PREFIX"],)
        app = env.get("APP_NAME") or "laravel"
        candidates = (laravel_slug(app, "-") + "-database-", laravel_slug(app, "_") + "_database_")
        return (*dict.fromkeys(candidates), "")
    if framework == "rq":
        return (env.get("RQ_KEY_PREFIX") or "rq",)
    if framework == "bullmq":
        return ("bull",)
    return ("",)


def laravel_slug(title: str, separator: str) -> str:
    """Laravel's `Str::slug($title, $separator)` for ASCII titles (non-ASCII letters kept)."""
    flip = "_" if separator == "-" else "-"
    text = title.replace(flip, separator).replace("@", f"{separator}at{separator}").lower()
    kept = "".join(c for c in text if c == separator or c.isalnum() or c.isspace())
    out: list[str] = []
    for c in kept:
        if c == separator or c.isspace():
            if not out or out[-1] != separator:
                out.append(separator)
        else:
            out.append(c)
    return "".join(out).strip(separator)


def store_problem(specs: tuple[DepthSpec, ...], scheme: str, source: str = SOURCE) -> str | None:
    """Why these queues cannot be read from a store of `scheme` (a `Scheme` value), or None."""
    if not specs:
        return None
    if scheme in REDIS_SCHEMES:
        return None
    if scheme in DATABASE_SCHEMES:
        others = [spec.label for spec in specs if spec.framework != "laravel"]
        if not others:
            return None
        return (
            f"{source}: {_shown(others[0])} is read from Redis, and the queue's store is "
            f"{scheme}: not supported (only laravel: entries read Laravel's database driver)"
        )
    return (
        f"{source}: queue depth is not supported on a {scheme} store "
        "(supported: Redis, and Laravel's database driver on PostgreSQL, MySQL/MariaDB or SQLite)"
    )
