"""The job timeout a worker command carries, for the stop budget check.

A stop gives the child ENTRYPOINT_STOP_TIMEOUT seconds before SIGKILL; a worker
that lets a job run N seconds needs more than N. The budget chain (job timeout
< ENTRYPOINT_STOP_TIMEOUT < the orchestrator's grace period) is in
docs/supervision.md. Pure: reads an argv, nothing else.
"""

from __future__ import annotations

from entrypoint.records import dataclass


@dataclass(frozen=True)
class Budget:
    option: str  # as the worker spells it: `queue:work --timeout`
    seconds: float


def _values(argv: tuple[str, ...], names: tuple[str, ...]) -> list[float]:
    """The numbers given to any of `names` (`--name=N`, `--name N`, `-t N`, `-tN`)."""
    found = []
    for index, word in enumerate(argv):
        for name in names:
            text = None
            if word == name and index + 1 < len(argv):
                text = argv[index + 1]
            elif name.startswith("--") and word.startswith(name + "="):
                text = word[len(name) + 1 :]
            elif not name.startswith("--") and word.startswith(name) and len(word) > len(name):
                text = word[len(name) :]
            if text is not None:
                try:
                    found.append(float(text))
                except ValueError:
                    continue
    return [value for value in found if value > 0]


def _program(word: str) -> str:
    return word.rsplit("/", 1)[-1]


def worker_timeout(argv: tuple[str, ...]) -> Budget | None:
    """The job or shutdown timeout the worker command sets, when it is one we know.

    Laravel `artisan queue:work --timeout=N` (also queue:listen), Sidekiq
    `-t N` / `--timeout N`, Celery `worker --soft-time-limit` / `--time-limit`
    (the larger of the two when both are given).
    """
    programs = [_program(word) for word in argv]
    if "artisan" in programs and any(w in ("queue:work", "queue:listen") for w in argv):
        values = _values(argv, ("--timeout",))
        if values:
            return Budget("queue:work --timeout", values[-1])
    elif "sidekiq" in programs:
        values = _values(argv, ("--timeout", "-t"))
        if values:
            return Budget("sidekiq --timeout", values[-1])
    elif "celery" in programs and "worker" in argv:
        values = _values(argv, ("--soft-time-limit", "--time-limit"))
        if values:
            return Budget("celery --time-limit", max(values))
    return None
