"""A replica's side of the handoff, as a loop over the store API (the supervisor's part).

    python tests/fake_replica.py URL KEY TTL REPLICA_ID STOP_SECONDS [--never-yield]

Every ttl/3 it registers (one round trip, which says whether a handoff is
active). Active while running: it "stops its child" (sleeps STOP_SECONDS),
reports `yielded`. Inactive while yielded: it reports `running` and resumes
unless that report finds a handoff again. Each step is a JSON line on stdout
with the CLOCK_MONOTONIC time it happened (`at`), shared by every process.
"""

from __future__ import annotations

import json
import sys
import time

from entrypoint.lease import open_handoff_store
from entrypoint.lease.handoff import ReplicaState
from entrypoint.plan.urls import parse_url


def say(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, "at": time.monotonic(), **fields}), flush=True)


def main(argv: list[str]) -> int:
    url, key, ttl_text, replica, stop_text = argv[:5]
    never = "--never-yield" in argv[5:]
    ttl, stop_seconds = float(ttl_text), float(stop_text)
    store = open_handoff_store(parse_url(url, "ENTRYPOINT_LEASE_URL"), key, ttl, timeout=1)
    state = ReplicaState.RUNNING
    say("started", replica=replica)
    while True:
        active = store.register(replica, ttl, state=state, stop_timeout=stop_seconds)
        if active and state is ReplicaState.RUNNING and not never:
            say("stopping", replica=replica)
            time.sleep(stop_seconds)  # the child's graceful stop
            store.report(replica, ReplicaState.YIELDED)
            state = ReplicaState.YIELDED
            say("yielded", replica=replica)
        elif not active and state is ReplicaState.YIELDED:
            if store.report(replica, ReplicaState.RUNNING):
                store.report(replica, ReplicaState.YIELDED)
            else:
                state = ReplicaState.RUNNING
                say("resumed", replica=replica)
        time.sleep(ttl / 3)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
