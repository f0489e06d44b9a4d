"""The run-time records and enums behave as the standard library's, for what the package uses.

Each behaviour is checked on a class built with `entrypoint.records` and
on the same class built with `dataclasses` / `enum`, side by side.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from typing import Any

import pytest

from entrypoint import records
from tests.helpers import modules_after


def make_records(dataclass: Any, field: Any) -> tuple[type[Any], type[Any]]:
    @dataclass(frozen=True)
    class Point:
        x: int
        y: int = 2
        tags: tuple[str, ...] = field(default_factory=tuple)
        secret: str = field(default="s", repr=False)

        @property
        def total(self) -> int:
            return int(self.x) + int(self.y)

    @dataclass(frozen=True)
    class Line:
        start: Point
        points: list[Point]

    return Point, Line


OURS = make_records(records.dataclass, records.field)
THEIRS = make_records(dataclasses.dataclass, dataclasses.field)


@pytest.mark.parametrize(("kinds", "replace", "asdict"), [
    (OURS, records.replace, records.asdict),
    (THEIRS, dataclasses.replace, dataclasses.asdict),
])  # fmt: skip
def test_records_construct_compare_hash_replace_and_convert(
    kinds: tuple[type[Any], type[Any]], replace: Any, asdict: Any
) -> None:
    point, line = kinds
    a = point(1)
    assert (a.x, a.y, a.tags, a.secret, a.total) == (1, 2, (), "s", 3)
    assert point(1, 2) == point(x=1, y=2) == a
    assert point(1, 3) != a
    assert hash(point(1)) == hash(a)
    assert replace(a, y=5) == point(1, 5)
    assert repr(a) == f"{point.__qualname__}(x=1, y=2, tags=())"
    assert asdict(line(a, [a])) == {
        "start": {"x": 1, "y": 2, "tags": (), "secret": "s"},
        "points": [{"x": 1, "y": 2, "tags": (), "secret": "s"}],
    }
    with pytest.raises(AttributeError):
        a.x = 3
    with pytest.raises(TypeError):
        point()
    with pytest.raises(TypeError):
        point(1, z=3)
    with pytest.raises(TypeError):
        replace(a, z=3)
    assert a != (1, 2)


def make_enums(str_enum: Any, int_enum: Any) -> tuple[Any, Any]:
    class Color(str_enum):  # type: ignore[misc]
        RED = "red"
        GREEN = "green"

        @property
        def loud(self) -> str:
            return str(self).upper()

    class Code(int_enum):  # type: ignore[misc]
        OK = 0
        CONFIG = 78

    return Color, Code


@pytest.mark.parametrize("kinds", [
    make_enums(records.StrEnum, records.IntEnum), make_enums(enum.StrEnum, enum.IntEnum)
])  # fmt: skip
def test_enums_look_up_iterate_and_print_as_their_values(kinds: tuple[Any, Any]) -> None:
    color: Any
    code: Any
    color, code = kinds
    assert color("red") is color.RED
    assert color(color.RED) is color.RED
    assert color.RED == "red"
    assert str in type(color.RED).__mro__
    assert (color.RED.name, color.RED.value, color.RED.loud) == ("RED", "red", "RED")
    assert str(color.GREEN) == "green"
    assert f"{color.GREEN}" == "green"
    assert f"{color.GREEN:>6}" == " green"
    assert list(color) == [color.RED, color.GREEN]
    assert len(color) == 2
    assert color["GREEN"] is color.GREEN
    assert {color.RED: 1}["red"] == 1
    assert repr(color.RED) == "<Color.RED: 'red'>"
    with pytest.raises(ValueError, match="not a valid"):
        color("blue")
    assert code(78) is code.CONFIG
    assert code.CONFIG == 78
    assert code.CONFIG + 1 == 79
    assert str(code.CONFIG) == "78"
    assert f"{code.CONFIG}" == "78"
    assert json.dumps([color.RED, code.CONFIG]) == '["red", 78]'
    assert sorted([code.CONFIG, code.OK]) == [code.OK, code.CONFIG]


def test_web_modes_start_imports_nothing_of_the_standard_library_beyond_builtins() -> None:
    """What web mode's start would pay for, were it imported (see the module docstring)."""
    web_path = (
        "import entrypoint.boot, entrypoint.cli.run, entrypoint.cli.inputs, entrypoint.cli.render\n"
        "import entrypoint.plan.settings, entrypoint.plan.modes, entrypoint.plan.deps\n"
        "import entrypoint.plan.addresses, entrypoint.plan.depth, entrypoint.plan.sizes\n"
        "import entrypoint.runtime.execute\n"
    )
    added = modules_after(web_path) - modules_after("pass")
    assert sorted(m for m in added if not m.startswith("entrypoint")) == []
