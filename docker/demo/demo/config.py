"""Which queue the demo uses: the variables the entrypoint in front of it reads, read its way.

1. `QUEUE_URL`;
2. else Laravel's `QUEUE_CONNECTION`: `redis` (from `REDIS_URL`, or
   `REDIS_HOST`/`REDIS_PORT`/`REDIS_USERNAME`/`REDIS_PASSWORD`/`REDIS_DB`) or
   `database` (from `DB_URL`, or `DB_CONNECTION` pgsql|sqlite with
   `DB_HOST`/`DB_PORT`/`DB_DATABASE`/`DB_USERNAME`/`DB_PASSWORD`);
3. else nothing: the embedded SQLite default.

Each connection variable X may come from a file instead, `X_FILE` (a compose
or Kubernetes secret): the file's text, one trailing newline dropped. Both X
and X_FILE set is an error. An empty variable counts as unset.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:
    from collections.abc import Mapping

SECRETS = (
    "QUEUE_URL",
    "REDIS_URL",
    "REDIS_PASSWORD",
    "DB_URL",
    "DB_PASSWORD",
)


class QueueConfigError(ValueError):
    """The variables name no queue the demo speaks; the message says why."""


def setting(env: Mapping[str, str], name: str) -> str:
    """The value of `name`, or of the file `name_FILE` names for a connection variable."""
    value = env.get(name, "").strip()
    path = env.get(f"{name}_FILE", "").strip() if name in SECRETS else ""
    if value and path:
        raise QueueConfigError(f"{name} and {name}_FILE are both set: keep one")
    if not path:
        return value
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise QueueConfigError(f"{name}_FILE: cannot read {path}: {exc.strerror}") from None
    return text.removesuffix("\n")


def _userinfo(user: str, password: str) -> str:
    if not user and not password:
        return ""
    text = quote(user, safe="")
    if password:
        text += ":" + quote(password, safe="")
    return text + "@"


def queue_url(env: Mapping[str, str] | None = None) -> str:
    """The queue's URL ('' for the embedded default); QueueConfigError for what the demo lacks."""
    env = os.environ if env is None else env
    url = setting(env, "QUEUE_URL")
    if url:
        return url
    connection = env.get("QUEUE_CONNECTION", "").strip().lower()
    if not connection:
        return ""
    if connection == "redis":
        url = setting(env, "REDIS_URL")
        if url:
            return url
        auth = _userinfo(env.get("REDIS_USERNAME", ""), setting(env, "REDIS_PASSWORD"))
        host = env.get("REDIS_HOST", "").strip() or "127.0.0.1"
        port = env.get("REDIS_PORT", "").strip() or "6379"
        db = env.get("REDIS_DB", "").strip() or "0"
        return f"redis://{auth}{host}:{port}/{db}"
    if connection == "database":
        url = setting(env, "DB_URL")
        if url:
            return url
        driver = env.get("DB_CONNECTION", "").strip().lower()
        database = env.get("DB_DATABASE", "").strip()
        if driver == "sqlite":
            return f"sqlite:///{database.lstrip('/')}" if database else ""
        if driver == "pgsql":
            auth = _userinfo(env.get("DB_USERNAME", ""), setting(env, "DB_PASSWORD"))
            host = env.get("DB_HOST", "").strip() or "127.0.0.1"
            port = env.get("DB_PORT", "").strip() or "5432"
            return f"postgresql://{auth}{host}:{port}/{database or 'postgres'}"
        raise QueueConfigError(
            f"DB_CONNECTION: the demo's database queue speaks pgsql and sqlite, not {driver!r}"
        )
    raise QueueConfigError(
        f"QUEUE_CONNECTION: the demo speaks redis and database, not {connection!r}"
    )
