"""The one redaction used by logs, errors and `explain`: no secret ever leaves.

Two kinds of secrets: the userinfo of URLs (`scheme://user:password@host`) and
the values of variables whose names say they are secret (PASSWORD, SECRET,
TOKEN, KEY, CREDENTIAL, ...).
"""

from __future__ import annotations

import contextlib
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

MASK = "***"

SECRET_NAME = re.compile(
    r"PASS|PWD|SECRET|TOKEN|KEY|CREDENTIAL|AUTH|PRIVATE|SIGNATURE|SALT|COOKIE|SESSION",
    re.IGNORECASE,
)

# scheme://userinfo@ : the userinfo runs to the LAST '@' before the path, so a
# password holding '@', ':' or '/' is masked whole (urllib splits the same way).
_URL_USERINFO = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^\s/?#]*@|[^\s?#]*@(?=[^\s@/?#]*(?:[/?#\s]|$)))"
)
_KEY_VALUE = re.compile(
    r"(?P<key>\b(?:[A-Za-z_][A-Za-z0-9_.\-]*)?(?:PASS|PWD|SECRET|TOKEN|KEY|CREDENTIAL|AUTH)[A-Za-z0-9_\-]*)"
    r"(?P<sep>\s*[=:]\s*)(?P<value>\"[^\"]*\"|'[^']*'|\S+)",
    re.IGNORECASE,
)
_QUERY_SECRET = re.compile(
    r"(?P<key>[?&][A-Za-z0-9_\-]*(?:pass|pwd|secret|token|key|auth)[A-Za-z0-9_\-]*=)(?P<value>[^&\s#]*)",
    re.IGNORECASE,
)


# Names that match the pattern but hold nothing secret.
NOT_SECRET = frozenset(
    ("PWD", "OLDPWD", "ENTRYPOINT_LEASE_KEY", "ENTRYPOINT_HANDOFF_KEY", "GPG_KEY")
)


def is_secret_name(name: str) -> bool:
    return name.upper() not in NOT_SECRET and SECRET_NAME.search(name) is not None


def _mask_userinfo(match: re.Match[str]) -> str:
    userinfo = match.group("userinfo")[:-1]
    user, sep, _password = userinfo.partition(":")
    if not sep:
        # A lone userinfo may be a token (nats://TOKEN@, https://TOKEN@) or a
        # password written without its colon: never shown.
        return f"{match.group('scheme')}{MASK}@" if user else match.group(0)
    return f"{match.group('scheme')}{user}:{MASK}@"


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """Mask URL passwords, `NAME=value` secrets, and any of `secrets` found in `text`."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _URL_USERINFO.sub(_mask_userinfo, text)
    text = _QUERY_SECRET.sub(lambda m: f"{m.group('key')}{MASK}", text)
    return _KEY_VALUE.sub(lambda m: f"{m.group('key')}{m.group('sep')}{MASK}", text)


def redact_url(url: str) -> str:
    return redact_text(url)


def secret_values(env: Mapping[str, str]) -> list[str]:
    """Every value in `env` that must never be shown: secret-named values and URL secrets.

    A value that is a URL as a whole is read with the program's one URL grammar
    (a password may hold '?', '#', '/' or a blank); URLs inside other text (a
    command line) are found by their `scheme://userinfo@` shape.
    """
    from entrypoint.errors import ConfigError
    from entrypoint.plan.urls import parse_url

    found: list[str] = []
    for name, value in env.items():
        if is_secret_name(name) and value:
            found.append(value)
        if "@" not in value:
            continue
        with contextlib.suppress(ConfigError):
            found.extend(parse_url(value, name).secrets)
        for match in _URL_USERINFO.finditer(value):
            user, sep, password = match.group("userinfo")[:-1].partition(":")
            if sep and password != user:
                found.append(password)
            elif not sep:
                found.append(user)
    return [s for s in found if len(s) >= 3]


def shown(name: str, value: object) -> str:
    """A value as a message may show it: one line, escaped; masked when it may be secret.

    A secret-named variable's value is masked; so is any value holding '@' (a
    user and password may precede it, in a URL or not).
    """
    from entrypoint.errors import one_line

    text = str(value)
    if is_secret_name(name):
        return MASK
    if "@" in text:
        return "(a value holding '@', not shown)"
    return one_line(redact_text(text))
