"""The state file's reader: json.loads's answers without json's imports.

`entrypoint health` runs every few seconds in every container (a Docker
HEALTHCHECK, a Kubernetes probe); what it imports is most of what it costs.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from entrypoint.runtime.state import loads
from tests.helpers import ROOT, base_env, modules_after, run_entrypoint

values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    max_leaves=30,
)


def same(left: Any, right: Any) -> bool:
    """Equal, with NaN equal to NaN (json.dumps writes it as NaN)."""
    if isinstance(left, float) and isinstance(right, float) and math.isnan(left):
        return math.isnan(right)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(map(same, left, right))
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(same(left[k], right[k]) for k in left)
    return type(left) is type(right) and left == right


@settings(max_examples=400, deadline=None)
@given(value=values, indent=st.sampled_from([None, 2]), space=st.sampled_from(["", " \n\t\r"]))
def test_what_json_dumps_writes_reads_back_as_json_loads_reads_it(
    value: Any, indent: int | None, space: str
) -> None:
    raw = (space + json.dumps(value, indent=indent) + space).encode()
    assert same(loads(raw), json.loads(raw))


@settings(max_examples=600, deadline=None)
@given(
    raw=st.binary(max_size=40)
    | st.text(alphabet='{}[]":,.-+0123456789eEtrufalsnNIiy \\\t\n\x01', max_size=40).map(str.encode)
)
def test_any_bytes_are_refused_where_json_loads_refuses_them(raw: bytes) -> None:
    try:
        expected = json.loads(raw.decode("utf-8"))
    except ValueError:
        with pytest.raises(ValueError):  # UnicodeDecodeError and JSONDecodeError included
            loads(raw)
    else:
        assert same(loads(raw), expected)


def test_syntax_errors_are_value_errors_in_a_fresh_interpreter() -> None:
    """Where nothing imported json: the C scanner's errors need json.decoder."""
    code = (
        "import sys\n"
        "from entrypoint.runtime.state import loads\n"
        "assert 'json.decoder' not in sys.modules\n"
        "for raw in (b'{bad', b'{\"a\": 1,}', b'[1, 2', b'{\"a\": 01}', b'\"\\x01\"'):\n"
        "    try:\n"
        "        loads(raw)\n"
        "    except ValueError as exc:\n"
        "        print(type(exc).__name__, exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 5, lines
    assert all(line.startswith("JSONDecodeError ") for line in lines), lines


def test_a_state_file_nested_beyond_the_stack_is_corrupt_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nested too deeply"):
        loads(b"[" * 60_000 + b"]" * 60_000)
    state = tmp_path / "state.json"
    state.write_bytes(b"[" * 30_000 + b"]" * 30_000)  # under the 64 KiB a state file may have
    result = run_entrypoint("health", env=base_env(MODE="worker", ENTRYPOINT_STATE_FILE=str(state)))
    assert result.returncode == 1
    assert (result.stdout + result.stderr).splitlines() == [
        f"state file {state} is unreadable or corrupt (nested too deeply)"
    ]


def test_the_health_path_imports_nothing_of_the_standard_library_but_the_json_scanner() -> None:
    health_path = (
        "import entrypoint.boot, entrypoint.cli.health\n"
        "from entrypoint.runtime.state import loads\n"
        'loads(b\'{"mode": "worker", "supervisor_pid": 1}\')\n'
    )
    added = modules_after(health_path) - modules_after("pass")
    others = {m for m in added if not m.startswith("entrypoint")} - {"__future__", "_json"}
    assert sorted(others) == []  # no json, re, enum, contextlib, collections, functools
