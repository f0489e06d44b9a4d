"""What a start imports, from `python -X importtime`: counts, totals, the heaviest.

`python -X importtime SCRIPT ...` runs the console script exactly as its
shebang would, and reports on stderr, for every module imported, its own time
and its cumulative time (microseconds), nested by indentation. The interpreter's
own start-up (encodings, site, ...) comes first and ends with the top-level
`site` line: what `python3 -c pass` pays too. Everything after it is the
script's.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PREFIX = "import time:"
OWN = "entrypoint"


@dataclass(frozen=True)
class Imported:
    name: str
    self_us: int
    cumulative_us: int
    depth: int


def parse(lines: Sequence[str]) -> list[Imported]:
    """The modules the script imported (after the interpreter's `site`), in order."""
    found: list[Imported] = []
    for line in lines:
        if not line.startswith(PREFIX):
            continue
        try:
            own, cumulative, name = line[len(PREFIX) :].split("|", 2)
            found.append(Imported(name.strip(), int(own), int(cumulative), _depth(name)))
        except ValueError:
            continue  # the heading line, "self [us] | cumulative | imported package"
    for index, module in enumerate(found):
        if module.name == "site" and module.depth == 0:
            return found[index + 1 :]
    return found


def _depth(name: str) -> int:
    blanks = len(name) - len(name.lstrip(" "))
    return max(0, (blanks - 1) // 2)


def is_own(name: str) -> bool:
    return name == OWN or name.startswith(OWN + ".")


def installed(python: str) -> frozenset[str]:
    """The top-level names installed in the site-packages of the venv `python` belongs to."""
    venv = Path(python).parent.parent  # not resolved: bin/python3 links to the base interpreter
    return frozenset(
        entry.name.split(".")[0].split("-")[0]
        for entry in venv.glob("lib/python*/site-packages/*")
        if not entry.name.endswith((".dist-info", ".pth", ".egg-info"))
    )


def summary(
    modules: Sequence[Imported], packages_installed: frozenset[str], heaviest: int = 5
) -> dict[str, Any]:
    """Counts and totals (ms) of one run; packages summed by their top-level name.

    A name that is neither in the standard library nor installed was only
    looked for (an optional import that failed): it is listed under `absent`.
    """
    own = [m for m in modules if is_own(m.name)]
    packages: dict[str, list[Imported]] = {}
    for module in modules:
        packages.setdefault(module.name.split(".")[0], []).append(module)
    ranked = sorted(packages.items(), key=lambda item: -sum(m.self_us for m in item[1]))
    by_package = [
        {
            "package": name,
            "modules": len(members),
            "self_ms": round(sum(m.self_us for m in members) / 1000, 2),
        }
        for name, members in ranked
    ]
    stdlib = sys.stdlib_module_names
    return {
        "modules": len(modules),
        "self_ms": round(sum(m.self_us for m in modules) / 1000, 2),
        "own_modules": len(own),
        "own_self_ms": round(sum(m.self_us for m in own) / 1000, 2),
        "third_party": sorted(
            name for name in packages if name != OWN and name in packages_installed
        ),
        "absent": sorted(
            name
            for name in packages
            if name not in stdlib and name not in packages_installed and name != OWN
        ),
        "by_package": by_package[:heaviest],
        "heaviest": [
            {"module": m.name, "self_ms": round(m.self_us / 1000, 2)}
            for m in sorted(modules, key=lambda m: -m.self_us)[:heaviest]
        ],
        "own": [m.name for m in own],
    }


def median_run(
    runs: Sequence[Sequence[Imported]], packages_installed: frozenset[str]
) -> dict[str, Any]:
    """The summary of the run whose total is the median; totals are medians over the runs."""
    summaries = sorted(
        (summary(run, packages_installed) for run in runs), key=lambda s: float(s["self_ms"])
    )
    chosen = dict(summaries[len(summaries) // 2])
    chosen["runs"] = len(summaries)
    for key in ("self_ms", "own_self_ms"):
        chosen[key] = round(statistics.median(float(s[key]) for s in summaries), 2)
    return chosen


def line(label: str, found: dict[str, Any] | None) -> str:
    """One printed line: counts, totals, the third-party packages and the heaviest packages."""
    if not found:
        return f"  {label}: not measured"
    heavy = ", ".join(f"{p['package']} {p['self_ms']} ms" for p in found["by_package"][:4])
    third = ", ".join(found["third_party"]) or "none"
    return (
        f"  {label}: {found['own_modules']} entrypoint modules {found['own_self_ms']} ms "
        f"of {found['modules']} modules {found['self_ms']} ms; third-party: {third}; "
        f"heaviest: {heavy}"
    )
