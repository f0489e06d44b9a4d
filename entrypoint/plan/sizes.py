"""Sizes as the contract spells them: `512M`, `1G`, `1Gi`, `1048576`, `90%`.

K, M, G and T (or Ki, Mi, Gi, Ti; any case; an optional trailing B) are
binary units, as in `docker run --memory`; a plain number is bytes; a
decimal fraction is allowed (`1.5G`); a percentage is of the cgroup memory
limit. Sizes are whole bytes, rounded down.

Pure and builtins only: settings import this on web mode's start path.
Errors are ValueError with one line that says what is wrong and names the
accepted forms; it does not repeat the value (the caller shows it, escaped,
next to the variable's name).
"""

from __future__ import annotations

FORMS = (
    "use a size such as 512M, 1G, 1Gi or 1048576 (bytes), "
    "or a percentage of the cgroup memory limit such as 90%"
)
_UNITS = {"k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
_DIGITS = frozenset("0123456789")
# Above 8 EiB no memory limit means anything; also keeps int() far from its digit cap.
_MAX = 2**63
_MAX_DIGITS = 24


def _number(text: str) -> tuple[int, int]:
    """`12.5` -> (125, 10): a decimal as an exact fraction; ValueError if not one."""
    whole, _, fraction = text.partition(".")
    if not (whole or fraction) or not _DIGITS.issuperset(whole + fraction):
        raise ValueError(f"not a size; {FORMS}")
    if len(whole) + len(fraction) > _MAX_DIGITS:
        raise ValueError(f"too large; {FORMS}")
    return int(whole + fraction or "0"), 10 ** len(fraction)


def _split(text: str) -> tuple[int, int, int | None]:
    """`text` as (numerator, denominator, bytes per unit), or None per unit for a percentage."""
    value = text.strip()
    if not value:
        raise ValueError(f"empty; {FORMS}")
    if value.startswith("-"):
        raise ValueError(f"a size cannot be negative; {FORMS}")
    if value.startswith("+"):
        value = value[1:]
    if value.endswith("%"):
        numerator, denominator = _number(value[:-1].rstrip())
        if numerator == 0:
            raise ValueError(f"0% leaves no memory; {FORMS}")
        if numerator > 100 * denominator:
            raise ValueError(f"a percentage cannot be above 100%; {FORMS}")
        return numerator, denominator, None
    lower = value.lower()
    unit = 1
    if lower.endswith("b"):
        lower = lower[:-1]
    binary = lower.endswith("i")
    if binary:
        lower = lower[:-1]
    if lower[-1:] in _UNITS:
        unit = _UNITS[lower[-1]]
        lower = lower[:-1]
    elif binary:
        raise ValueError(f"not a size; {FORMS}")
    numerator, denominator = _number(lower.rstrip())
    return numerator, denominator, unit


def _bytes(numerator: int, denominator: int, unit: int) -> int:
    size = numerator * unit // denominator
    if size <= 0:
        raise ValueError(f"a size must be at least 1 byte; {FORMS}")
    if size >= _MAX:
        raise ValueError(f"too large; {FORMS}")
    return size


def check_size(text: str) -> None:
    """Raise ValueError if `text` is not a size or a percentage (which needs no limit here).

    For settings, which cannot read the cgroup: `parse_size` with the limit
    is called by whoever reads it.
    """
    numerator, denominator, unit = _split(text)
    if unit is not None:
        _bytes(numerator, denominator, unit)


def is_percentage(text: str) -> bool:
    """Whether `text` is a percentage: it needs the cgroup's limit to become bytes."""
    return text.strip().endswith("%")


def parse_size(text: str, limit: int | None) -> int:
    """`text` in bytes; a percentage is of `limit` (the cgroup's, None when there is none)."""
    numerator, denominator, unit = _split(text)
    if unit is None:
        if limit is None or limit <= 0:
            raise ValueError(
                "a percentage needs a cgroup memory limit, and none is set; "
                "use a size such as 512M, 1G, 1Gi or 1048576 (bytes)"
            )
        return _bytes(numerator * limit, denominator * 100, 1)
    return _bytes(numerator, denominator, unit)
