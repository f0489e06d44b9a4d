"""Restart delays of a child that crashes at once, again and again, under each tool's defaults.

The entrypoint's come from its own policy (`entrypoint.plan.policy.decide` over
the default plan, the longest and the shortest jitter); Docker's, Kubernetes',
supervisord's and PM2's from their rules (docs/performance.md cites each).
`plot` draws them (`--plot FILE`), with matplotlib when it imports.
"""

from __future__ import annotations

import itertools
import math
import sys
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT


def policy_delays(crashes: int = 10) -> dict[str, Any]:
    """Delay (s) before each restart of a child that crashes at once, `crashes` times.

    None: no restart at all (supervisord's FATAL state).
    """
    sys.path.insert(0, str(ROOT))
    from entrypoint.plan.modes import SupervisePlan
    from entrypoint.plan.policy import History, decide
    from entrypoint.plan.settings import default_plan

    plan = default_plan()
    assert isinstance(plan, SupervisePlan)

    def ours(rand: float) -> list[float]:
        policy, history, now, delays = plan.restart, History(), 0.0, []
        for _ in range(crashes):
            decision = decide(policy, history, exit_code=1, uptime=0.1, now=now, rand=rand)
            history = decision.history
            delays.append(round(decision.delay, 3))
            now += decision.delay + 0.1
        return delays

    pm2, previous = [], 0
    for _ in range(crashes):  # lib/God.js: floor(min(15000, previous * 1.5)) from the given value
        previous = 100 if not previous else math.floor(min(15000, previous * 1.5))
        pm2.append(previous / 1000)
    return {
        "entrypoint (longest, no jitter)": ours(0.0),
        "entrypoint (shortest, full jitter)": ours(1.0),
        "Docker restart=always": [min(0.1 * 2**n, 60.0) for n in range(crashes)],
        "Kubernetes CrashLoopBackOff": [0.0]
        + [min(10.0 * 2**n, 300.0) for n in range(crashes - 1)],
        "supervisord (startretries=3)": [1.0, 2.0, 3.0] + [None] * (crashes - 3),
        "PM2 exp_backoff_restart_delay=100": pm2,
    }


def plot(delays: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = {
        "entrypoint (longest, no jitter)": ("tab:green", "o", "-"),
        "Docker restart=always": ("tab:blue", "s", "-"),
        "Kubernetes CrashLoopBackOff": ("tab:purple", "^", "-"),
        "supervisord (startretries=3)": ("tab:red", "D", "-"),
        "PM2 exp_backoff_restart_delay=100": ("tab:orange", "v", "-"),
    }
    crashes = range(1, len(delays["Docker restart=always"]) + 1)
    figure, (per_crash, total) = plt.subplots(1, 2, figsize=(13, 6))
    for label, (colour, marker, line) in styles.items():
        values = delays[label]
        shown = [(n, v) for n, v in zip(crashes, values, strict=True) if v is not None]
        xs, ys = [n for n, _ in shown], [v for _, v in shown]
        name = "entrypoint (defaults)" if label.startswith("entrypoint") else label
        per_crash.plot(xs, ys, line, color=colour, marker=marker, label=name)
        cumulative = list(itertools.accumulate(ys))
        total.plot(xs, cumulative, line, color=colour, marker=marker, label=name)
        if len(shown) < len(values):
            gave_up = len(shown) + 1
            for axis, y in ((per_crash, ys[-1]), (total, cumulative[-1])):
                axis.plot([gave_up], [y], "x", color=colour, markersize=12, mew=3)
                axis.annotate(
                    "FATAL: no more restarts",
                    (gave_up, y),
                    textcoords="offset points",
                    xytext=(8, -4),
                    color=colour,
                    fontsize=8,
                )
    low = delays["entrypoint (shortest, full jitter)"]
    high = delays["entrypoint (longest, no jitter)"]
    per_crash.fill_between(
        list(crashes), low, high, color="tab:green", alpha=0.2, label="entrypoint jitter (80-100 %)"
    )
    for axis, title in (
        (per_crash, "Delay before the restart after crash n"),
        (total, "Time from the first crash to restart n"),
    ):
        axis.set_yscale("symlog", linthresh=0.1)
        axis.set_xticks(list(crashes))
        axis.set_xlabel("consecutive crash (the child exits at once, again and again)")
        axis.set_ylabel("seconds (symmetric log scale)")
        axis.set_title(title)
        axis.grid(visible=True, which="both", alpha=0.3)
    handles, labels = per_crash.get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=3, fontsize=9, frameon=False)
    figure.suptitle("Restart delays over 10 consecutive crashes (default settings)")
    figure.tight_layout(rect=(0, 0.1, 1, 1))
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True
