"""The printed table and the budgets: plain values in, text out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Budget:
    name: str
    target: str
    measured: str
    met: bool | None  # None: could not be measured (a peer is missing)


def budget(name: str, target: str, value: float | None, limit: float | None, text: str) -> Budget:
    """Met when `value` <= `limit`; not measured when either is None."""
    if value is None or limit is None:
        return Budget(name, target, "not measured", None)
    return Budget(name, target, text, value <= limit)


def get(results: dict[str, Any] | None, *path: str) -> Any:
    """results[path[0]][path[1]]..., or None where any step is missing or None."""
    value: Any = results
    for key in path:
        if not isinstance(value, dict) or value.get(key) is None:
            return None
        value = value[key]
    return value


def ratio_text(value: float | None, base: float | None, unit: str) -> str:
    if not value or not base:
        return ""
    return f"{value} {unit} vs {base} {unit} ({value / base:.2f}x)"


def fmt(value: Any, width: int = 10) -> str:
    if value is None:
        text = "n/a"
    elif isinstance(value, float):
        text = f"{value:.2f}" if abs(value) < 1000 else f"{value:.0f}"
    else:
        text = str(value)
    return text.rjust(width)


def table(title: str, columns: list[tuple[str, str]], rows: dict[str, Any]) -> str:
    """`columns`: (heading, key) pairs read from each row's dict."""
    widths = [max(10, len(heading)) + 2 for heading, _ in columns]
    first = max([26, *(len(label) + 2 for label in rows)])
    lines = [
        title,
        "  "
        + "".ljust(first)
        + "".join(h.rjust(w) for (h, _), w in zip(columns, widths, strict=True)),
    ]
    for label, row in rows.items():
        cells = "".join(
            fmt(row.get(key) if row else None, w)
            for (_, key), w in zip(columns, widths, strict=True)
        )
        lines.append("  " + label.ljust(first) + cells)
    return "\n".join(lines)


VERDICTS = {True: "met", False: "MISSED", None: "n/a"}


def budget_lines(found: list[Budget]) -> str:
    """One line per budget: verdict, name, target, what was measured."""
    return "\n".join(
        f"  {VERDICTS[b.met]:7} {b.name:34} target {b.target:30} measured {b.measured}"
        for b in found
    )
