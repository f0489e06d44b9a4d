"""What a demo job does: it sleeps for its `seconds` (a stand-in for real work)."""

from __future__ import annotations

import time

from demo.queues import runs_key


def perform(seconds: float) -> None:
    # time.sleep resumes after a signal handler returns (PEP 475): a graceful
    # stop lets the job finish; only a handler that raises cuts it short.
    time.sleep(seconds)


def rq_run(seconds: float) -> dict[str, float]:
    """The RQ job: count this start (how exactly-once is checked), then work."""
    from rq import get_current_job

    job = get_current_job()
    if job is not None:
        job.connection.hincrby(runs_key(job.origin), job.id, 1)
    perform(seconds)
    return {"seconds": seconds}
