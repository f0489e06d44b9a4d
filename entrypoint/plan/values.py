"""Parsers for the values of settings: text (or TOML values) -> typed values.

Builtins only: web mode runs every one of them before its exec. Each raises
`Invalid` with a message that says what is wrong and what is accepted; the
caller adds the variable's name.
"""

from __future__ import annotations

import _signal

from entrypoint import sigstate

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

# Durations above this are taken as "forever" and clamped to it (about 31.7
# years): `ENTRYPOINT_WAIT_TIMEOUT=999999999` means "wait forever" to many
# users, and every timer and socket timeout of the program can hold it.
MAX_SECONDS = 1e9
_INFINITY = float("inf")
_UNITS = (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0))
TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off", "")
# shlex's whitespace (not str.split's, which splits on more).
_SHELL_BLANKS = " \t\r\n"
_SHELL_SPECIAL = "'\"\\"


class Invalid(ValueError):
    """A value that does not parse; the message says what is wrong with it."""


def parse_seconds(value: object) -> float:
    """`25`, `2.5`, `25s`, `500ms`, `2m`, `1h` -> seconds; finite, >= 0, at most MAX_SECONDS."""
    if isinstance(value, bool):
        raise Invalid("not a number of seconds")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = str(value).strip().lower()
        scale = 1.0
        for suffix, factor in _UNITS:
            if text.endswith(suffix):
                text, scale = text[: -len(suffix)].strip(), factor
                break
        if not text or not all(c in "0123456789.+-e" for c in text):
            raise Invalid("not a number of seconds (e.g. 25, 2.5, 500ms, 2m)")
        try:
            seconds = float(text) * scale
        except ValueError:
            raise Invalid("not a number of seconds (e.g. 25, 2.5, 500ms, 2m)") from None
    if not -_INFINITY < seconds < _INFINITY:  # NaN too; not math.isfinite: a .so to load
        raise Invalid("not a finite number of seconds")
    if seconds < 0:
        raise Invalid("must not be negative")
    return min(seconds, MAX_SECONDS)


def parse_positive_seconds(value: object) -> float:
    seconds = parse_seconds(value)
    if seconds <= 0:
        raise Invalid("must be greater than 0 (e.g. 25, 2.5, 500ms, 2m)")
    return seconds


def at_most(limit: float, parse: Callable[[object], float]) -> Callable[[object], float]:
    """`parse`, then refuse a value above `limit` (where a backend cannot hold more)."""

    def parse_bounded(value: object) -> float:
        seconds = parse(value)
        if seconds > limit:
            raise Invalid(f"must be at most {limit:g} seconds")
        return seconds

    return parse_bounded


def parse_count(value: object) -> int:
    if isinstance(value, bool):
        raise Invalid("not a whole number")
    text = str(value).strip().removeprefix("+")
    if not text or not text.isascii() or not text.isdigit() or len(text) > 18:
        raise Invalid("not a whole number >= 0")
    return int(text)


def parse_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise Invalid("not a boolean (use 1/0, true/false, yes/no, on/off)")


def parse_signal(value: object) -> int | None:
    """`TERM`, `SIGTERM`, `sigterm` or `15` -> 15; empty -> None (as received)."""
    text = str(value).strip().upper()
    if not text:
        return None
    if text.isascii() and text.isdigit():
        number = int(text)
        if 0 < number < _signal.NSIG:
            return number
        raise Invalid(f"no signal number {number}")
    name = "SIG" + text.removeprefix("SIG")
    for number, known in sigstate.NAMES.items():
        if known == name:
            return number
    raise Invalid("not a signal name or number (e.g. TERM, QUIT, 15)")


def choice(
    choices: tuple[str, ...], aliases: dict[str, str] | None = None
) -> Callable[[object], str]:
    """A parser that accepts one of `choices` (trimmed, case-insensitive)."""

    def parse(value: object) -> str:
        text = str(value).strip().lower()
        text = (aliases or {}).get(text, text)
        if text not in choices:
            raise Invalid(f"must be one of {', '.join(choices)}")
        return text

    return parse


def split_command(value: object) -> tuple[str, ...] | None:
    """A command: a list from the file, or text split like a shell splits words (shlex).

    Without quotes or backslashes, shlex splits on its four blanks only: that
    case needs no import (shlex imports re, which web mode's start cannot afford).
    """
    if isinstance(value, list | tuple):
        if not all(isinstance(word, str) for word in value):
            raise Invalid("a command list must hold only strings")
        words = tuple(value)
    else:
        text = str(value)
        if any(c in text for c in _SHELL_SPECIAL):
            import shlex

            try:
                words = tuple(shlex.split(text))
            except ValueError as exc:
                raise Invalid(f"cannot be split into words ({exc})") from None
        else:
            words = tuple(_split_blanks(text))
    return words or None


def _split_blanks(text: str) -> list[str]:
    words: list[str] = []
    word: list[str] = []
    for char in text:
        if char in _SHELL_BLANKS:
            if word:
                words.append("".join(word))
                word = []
        else:
            word.append(char)
    if word:
        words.append("".join(word))
    return words


def parse_text(value: object) -> str | None:
    text = str(value).strip()
    return text or None


def parse_list(value: object) -> tuple[str, ...]:
    """Comma-separated text, or a list from the file; blank items dropped."""
    if isinstance(value, list | tuple):
        items = [str(item) for item in value]
    else:
        items = str(value).split(",")
    return tuple(item.strip() for item in items if item.strip())


def parse_url_list(value: object) -> tuple[str, ...]:
    """URLs separated by commas or blanks, or a list from the file."""
    if isinstance(value, list | tuple):
        return tuple(str(item).strip() for item in value if str(item).strip())
    text = str(value)
    for blank in _SHELL_BLANKS:
        text = text.replace(blank, ",")
    return tuple(item for item in text.split(",") if item)


def is_identifier(name: str) -> bool:
    """A variable name as a shell writes one: `[A-Za-z_][A-Za-z0-9_]*`."""
    return (
        bool(name)
        and name.isascii()
        and (name[0].isalpha() or name[0] == "_")
        and all(c.isalnum() or c == "_" for c in name)
    )


def parse_variable_name(value: object) -> str:
    text = str(value).strip()
    if not is_identifier(text):
        raise Invalid("not a variable name ([A-Za-z_][A-Za-z0-9_]*)")
    return text
