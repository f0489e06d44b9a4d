"""`python -m demo.worker`: process jobs until told to stop.

SQLite or PostgreSQL queue: claim a job, run it, record it; poll every
DEMO_POLL_INTERVAL seconds (default 0.5) when the queue is empty. Redis
queue: an RQ worker.

On SIGTERM or SIGINT the job in flight is finished, then the worker exits 0
(RQ calls it a warm shutdown). A second signal stops at once: the SQL
worker gives its job back to the queue and exits 1; RQ kills its work horse
(cold shutdown) and the job goes to RQ's failure handling (retried: the demo
enqueues with Retry).
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

# Only the signal handling is imported before main() installs it: a stop at
# any moment of the start is taken, and honoured.
from demo.lifecycle import ForcedStop, Stop, fail, setup_logging

if TYPE_CHECKING:
    import logging

    from demo.queues import RedisQueue, SqlQueue


def run_sql(queue: SqlQueue, stop: Stop, poll: float, log: logging.Logger) -> int:
    from demo.jobs import perform
    from demo.queues import identity

    me = identity()
    log.info(
        "worker_started queue=%s where=%s name=%s worker=%s",
        queue.kind,
        queue.where,
        queue.name,
        me,
    )
    while not stop.requested:
        job = queue.claim(me)
        if job is None:
            stop.wait(poll)
            continue
        log.info(
            "job_started id=%s seconds=%g runs=%d worker=%s", job.id, job.seconds, job.runs, me
        )
        try:
            with stop.interruptible():
                perform(job.seconds)
        except ForcedStop:
            queue.release(job.id, me)
            log.warning("job_released id=%s reason=second_stop_signal worker=%s", job.id, me)
            return 1
        except Exception as exc:  # a failing job is recorded, the worker goes on
            queue.finish(job.id, me, error=f"{type(exc).__name__}: {exc}")
            log.exception("job_failed id=%s worker=%s", job.id, me)
            continue
        queue.finish(job.id, me)
        log.info("job_finished id=%s worker=%s", job.id, me)
    log.info("worker_stopped signal=%s worker=%s", stop.signal_name, me)
    return 0


def run_rq(queue: RedisQueue, stop: Stop, maintenance: int, log: logging.Logger) -> int:
    import logging

    from rq import Worker

    from demo.queues import identity

    class DemoWorker(Worker):
        """RQ's worker, told of a stop signal that came before its own handlers were in place."""

        def _install_signal_handlers(self) -> None:
            super()._install_signal_handlers()  # type: ignore[no-untyped-call]
            # Until the line above, TERM and INT reach the demo's handler, and
            # RQ would never hear of them: the worker would run on until the
            # entrypoint's SIGKILL. From here on RQ's handlers take them. RQ
            # reads this flag of its own before each dequeue.
            if stop.requested:
                self._stop_requested = True

    me = identity()
    log.info("worker_started queue=redis name=%s worker=%s", queue.queue.name, me)
    # RQ installs its own TERM/INT handlers in work(): first = warm shutdown.
    # Its maintenance gives back the jobs of workers that died (abandoned, or
    # stuck in its intermediate queue); every 10 min by default, sooner here.
    worker = DemoWorker(
        [queue.queue], connection=queue.redis, name=me, maintenance_interval=maintenance
    )
    worker.work(logging_level=logging.getLevelName(log.getEffectiveLevel()))
    log.info("worker_stopped signal=%s worker=%s", stop.signal_name or "-", me)
    return 0


def main() -> int:
    stop = Stop()
    stop.install()
    log = setup_logging("demo.worker")
    from demo.config import QueueConfigError
    from demo.queues import RedisQueue, SqlQueue, open_queue

    try:
        poll = float(os.environ.get("DEMO_POLL_INTERVAL", "0.5"))
        maintenance = int(os.environ.get("DEMO_RQ_MAINTENANCE_INTERVAL", "60"))
        queue = open_queue()
    except QueueConfigError as exc:
        return fail("demo.worker", str(exc), 78)
    except ValueError:
        return fail(
            "demo.worker",
            "DEMO_POLL_INTERVAL and DEMO_RQ_MAINTENANCE_INTERVAL must be numbers of seconds",
            78,
        )
    if isinstance(queue, RedisQueue):
        return run_rq(queue, stop, maintenance, log)
    assert isinstance(queue, SqlQueue)
    return run_sql(queue, stop, poll, log)


if __name__ == "__main__":
    sys.exit(main())
