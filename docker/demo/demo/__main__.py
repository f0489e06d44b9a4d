"""`python -m demo enqueue|jobs`: the demo's queue from the command line.

python -m demo enqueue --count 5 --seconds 2
python -m demo jobs [--json] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import sys

from demo.config import QueueConfigError
from demo.lifecycle import fail
from demo.queues import open_queue


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    enqueue = commands.add_parser("enqueue", help="add jobs to the queue")
    enqueue.add_argument("--count", type=int, default=1)
    enqueue.add_argument("--seconds", type=float, default=1.0)
    listing = commands.add_parser("jobs", help="list the latest jobs")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.add_argument("--limit", type=int, default=200)
    args = parser.parse_args(argv)
    try:
        queue = open_queue()
        if args.command == "enqueue":
            jobs = queue.enqueue(args.count, args.seconds)
            print(" ".join(job.id for job in jobs))
            return 0
        jobs = queue.jobs(args.limit)
    except (QueueConfigError, ValueError) as exc:
        return fail("demo", str(exc), 78 if isinstance(exc, QueueConfigError) else 64)
    if args.json:
        print(json.dumps([job.as_dict() for job in jobs], indent=2))
    else:
        for job in jobs:
            print(f"{job.id}  {job.status:<8}  runs={job.runs}  {job.worker or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
