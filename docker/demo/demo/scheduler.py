"""`python -m demo.scheduler`: enqueue a small `tick` job every DEMO_SCHEDULE_EVERY seconds.

Run it with MODE=scheduler: the entrypoint makes sure one replica at a time
runs it. Stops at once on SIGTERM or SIGINT, exit 0.
"""

from __future__ import annotations

import os
import sys

from demo.config import QueueConfigError
from demo.lifecycle import Stop, fail, setup_logging
from demo.queues import identity, open_queue


def main() -> int:
    stop = Stop()
    stop.install()
    log = setup_logging("demo.scheduler")
    try:
        every = float(os.environ.get("DEMO_SCHEDULE_EVERY", "30"))
        if every <= 0:
            raise ValueError(every)
        queue = open_queue()
    except QueueConfigError as exc:
        return fail("demo.scheduler", str(exc), 78)
    except ValueError:
        return fail("demo.scheduler", "DEMO_SCHEDULE_EVERY must be a positive number", 78)
    me = identity()
    log.info("scheduler_started queue=%s every_s=%g scheduler=%s", queue.kind, every, me)
    while not stop.requested:
        (job,) = queue.enqueue(1, 0.0, kind="tick")
        log.info("tick_enqueued id=%s scheduler=%s", job.id, me)
        stop.wait(every)
    log.info("scheduler_stopped signal=%s scheduler=%s", stop.signal_name, me)
    return 0


if __name__ == "__main__":
    sys.exit(main())
