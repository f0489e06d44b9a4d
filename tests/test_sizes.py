"""Sizes (`ENTRYPOINT_MAX_RSS`): the forms, binary units, percentages, and one line per error."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from entrypoint.plan.sizes import FORMS, check_size, is_percentage, parse_size

GIB = 2**30
ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("512M", 512 * 2**20),
        ("1G", GIB),
        ("1Gi", GIB),
        ("1GiB", GIB),
        ("1gb", GIB),
        ("1g", GIB),
        ("64k", 64 * 1024),
        ("64Ki", 64 * 1024),
        ("2T", 2 * 2**40),
        ("1024", 1024),
        ("1024B", 1024),
        ("1.5G", 3 * GIB // 2),
        ("0.5M", 2**19),
        (".5M", 2**19),
        ("  256 M ", 256 * 2**20),
        ("+1G", GIB),
        ("1", 1),
    ],
)
def test_sizes_are_binary_bytes(text: str, expected: int) -> None:
    assert parse_size(text, None) == expected
    assert parse_size(text, 10 * GIB) == expected
    check_size(text)
    assert not is_percentage(text)


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("90%", 1000, 900),
        ("100%", 1000, 1000),
        ("12.5%", 2 * GIB, GIB // 4),
        (" 50 % ", 3, 1),  # rounded down
        ("0.001%", 10**6, 10),
    ],
)
def test_a_percentage_is_of_the_limit(text: str, limit: int, expected: int) -> None:
    assert parse_size(text, limit) == expected
    assert is_percentage(text)
    check_size(text)  # no limit needed to check the form


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("0", "at least 1 byte"),
        ("0M", "at least 1 byte"),
        ("0.1", "at least 1 byte"),
        ("0%", "0% leaves no memory"),
        ("150%", "cannot be above 100%"),
        ("100.5%", "cannot be above 100%"),
        ("lots", "not a size"),
        ("1.2.3G", "not a size"),
        ("1e9", "not a size"),
        ("G", "not a size"),
        ("1i", "not a size"),
        ("1X", "not a size"),
        ("1_000", "not a size"),
        ("%", "not a size"),
        (".", "not a size"),
        ("١٢", "not a size"),  # non-ASCII digits
        ("-1G", "cannot be negative"),
        ("-5%", "cannot be negative"),
        ("", "empty"),
        ("   ", "empty"),
        ("9" * 30, "too large"),
        ("8589934592G", "too large"),
    ],
)
def test_errors_say_what_is_wrong_and_the_accepted_forms(text: str, why: str) -> None:
    for call in (lambda: parse_size(text, GIB), lambda: check_size(text)):
        with pytest.raises(ValueError, match=re.escape(why)) as caught:
            call()
        message = str(caught.value)
        assert FORMS in message
        assert "\n" not in message


def test_a_percentage_without_a_limit_says_so() -> None:
    for limit in (None, 0):
        with pytest.raises(ValueError, match="needs a cgroup memory limit") as caught:
            parse_size("90%", limit)
        assert "512M" in str(caught.value)


@given(
    st.integers(min_value=1, max_value=10**6),
    st.sampled_from([("", 1), ("K", 2**10), ("Mi", 2**20), ("g", 2**30), ("GiB", 2**30)]),
)
def test_whole_numbers_times_their_unit(number: int, unit: tuple[str, int]) -> None:
    suffix, factor = unit
    assert parse_size(f"{number}{suffix}", None) == number * factor


@given(st.integers(min_value=1, max_value=1000), st.integers(min_value=1, max_value=2**40))
def test_percentages_in_tenths(tenths: int, limit: int) -> None:
    text = f"{tenths // 10}.{tenths % 10}%"
    expected = limit * tenths // 1000
    if expected == 0:
        with pytest.raises(ValueError, match="at least 1 byte"):
            parse_size(text, limit)
    else:
        assert parse_size(text, limit) == expected
        assert 0 < expected <= limit


@given(st.text(max_size=20))
def test_any_text_is_a_size_or_one_line_naming_the_forms(text: str) -> None:
    try:
        size = parse_size(text, GIB)
    except ValueError as exc:
        message = str(exc)
    else:
        assert 0 < size < 2**63
        return
    assert "\n" not in message
    assert "512M" in message


def test_importing_sizes_imports_nothing_else() -> None:
    """On web mode's start path: only builtins (no re, dataclasses, enum)."""
    code = (
        "import sys; before = set(sys.modules); import entrypoint.plan.sizes; "
        "print(' '.join(sorted(set(sys.modules) - before)))"
    )
    out = subprocess.run(
        [sys.executable, "-S", "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
        cwd=ROOT,
    ).stdout
    loaded = set(out.split())
    assert "entrypoint.plan.sizes" in loaded
    assert loaded <= {"entrypoint", "entrypoint.plan", "entrypoint.plan.sizes", "__future__"}
