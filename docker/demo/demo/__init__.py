"""The demo app packaged in the entrypoint image.

- `python -m demo.web`: a small web app that enqueues jobs and shows their status.
- `python -m demo.worker`: processes jobs; on SIGTERM it finishes the job in flight.
- `python -m demo.scheduler`: enqueues a small job every DEMO_SCHEDULE_EVERY seconds.
- `python -m demo enqueue|jobs`: the same queue from the command line.

The queue is chosen by QUEUE_URL: `sqlite:///path` (the default, a file under
./demo-data) or `redis://...` (RQ).
"""

from __future__ import annotations

__version__ = "0.1.0"
