"""The handoff lease in the queue's store: replicas yield to a developer's worker.

Two sides share one store (the leader lease's: `ENTRYPOINT_LEASE_URL`, else
the queue URL) and one key (`ENTRYPOINT_HANDOFF_KEY`):

- the handoff (`entrypoint handoff --store -- CMD...`) takes the handoff
  lease with `hold`, keeps it with `renew` while CMD runs, and gives it up
  with `release`; `holder` tells a second handoff who is in the way;
- each replica running with `ENTRYPOINT_HANDOFF=1` announces itself with
  `register` every ttl/3 (the registration expires by itself when the
  replica is gone), which also answers whether a handoff is active: one
  round trip per check. It `report`s `yielded` once its child has stopped,
  and `running` before it starts it again; the handoff waits for `replicas()`
  to show every live one `yielded` (`ReplicaInfo.yielded`) before it starts CMD.

The handoff lease's expiry is set half the TTL ahead (`HOLD_FRACTION`) at
every renewal, and the handoff renews it every ttl/6 (`RENEW_FRACTION`, so
two renewals in a row may fail). A handoff killed with SIGKILL stops
renewing: its lease expires at most ttl/2 later, and replicas that check every
ttl/3 resume within 5/6 of the TTL (the contract says within the TTL).

Every call is one attempt bounded by the store's timeout, and raises
`LeaseUnavailable` (redacted, one line) when the store cannot be asked;
`release` and `close` never raise. `entrypoint.lease.open_handoff_store` does no I/O.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

# The handoff lease lives this much of the TTL past each renewal, renewed this
# often (see above): kill -> expiry <= ttl/2, + a replica's check <= ttl/3.
HOLD_FRACTION = 1 / 2
RENEW_FRACTION = 1 / 6
# Values read from the store are shown at most this long.
_FIELD_LIMIT = 200


class ReplicaState(StrEnum):
    RUNNING = "running"  # its child runs (or will: it is not yielding)
    YIELDED = "yielded"  # its child has stopped for the handoff


@dataclass(frozen=True)
class HolderInfo:
    """Who holds the handoff lease: what the second handoff names in its one line."""

    host: str
    pid: int
    since: str  # wall-clock ISO 8601, with its offset

    @classmethod
    def from_json(cls, text: str) -> HolderInfo:
        """The holder stored as JSON; unknown fields when the value is not ours."""
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if not isinstance(value, dict):
            return cls(host="(unknown)", pid=0, since="(unknown)")
        pid = value.get("pid")
        return cls(
            host=str(value.get("host", "(unknown)")),
            pid=pid if isinstance(pid, int) else 0,
            since=str(value.get("since", "(unknown)")),
        )

    def describe(self) -> str:
        """`host H, pid N, since T`, each value escaped onto one line."""
        return f"host {shown(self.host)}, pid {self.pid}, since {shown(self.since)}"


@dataclass(frozen=True)
class ReplicaInfo:
    replica_id: str
    state: ReplicaState
    stop_timeout: float  # seconds the replica may take to stop its child (it says so)
    expires_in: float  # seconds until its registration lapses, unless renewed
    saw_handoff: bool  # the replica's last registration or report found a handoff active

    @property
    def yielded(self) -> bool:
        """Stopped for the handoff that is active now, not just for an earlier one.

        A replica's `yielded` written before the handoff lease was taken may be
        about to become `running` (it saw no handoff and is resuming): only a
        `yielded` written while the replica saw the lease held counts.
        """
        return self.state is ReplicaState.YIELDED and self.saw_handoff


class HandoffStore(Protocol):
    """The handoff lease and the replicas' registrations for one key in one store."""

    key: str
    ttl: float
    where: str  # the store, `Dependency.display`: no secret

    def hold(self, info: HolderInfo) -> bool:
        """Take the handoff lease for `info`: True when taken (or already ours), False when held."""

    def renew(self) -> bool:
        """Extend our handoff lease; False when it is no longer ours (it expired, or was taken)."""

    def release(self) -> None:
        """Give our handoff lease up, if it is still ours; best effort, never raises."""

    def holder(self) -> HolderInfo | None:
        """Who holds the handoff lease now; None when nobody does."""

    def register(
        self,
        replica_id: str,
        ttl: float,
        *,
        state: ReplicaState | None = None,
        stop_timeout: float | None = None,
    ) -> bool:
        """Announce `replica_id` for `ttl` seconds; return whether a handoff is active.

        One round trip, atomic: the answer is also stored with the
        registration (`ReplicaInfo.saw_handoff`). `state` and `stop_timeout`
        None keep what the store has (running and 0 for a new registration).
        `stop_timeout` is what the handoff adds to its bounded wait.
        """

    def report(self, replica_id: str, state: ReplicaState) -> bool:
        """Set `replica_id`'s state (registering it again if lapsed); whether a handoff is active.

        A replica about to resume reports `running` first, and starts its
        child only if this says no handoff is active (else it reports
        `yielded` again): a handoff taken in between is never missed.
        """

    def replicas(self) -> list[ReplicaInfo]:
        """The live registrations, by id; lapsed ones are dropped from the store."""

    def handoff_active(self) -> bool:
        """Whether a handoff lease is held now; one round trip."""

    def close(self) -> None:
        """Drop the connection; never raises."""


def hold_ms(ttl: float) -> int:
    """How far ahead each hold or renewal sets the handoff lease's expiry, in milliseconds."""
    return max(1, math.ceil(ttl * HOLD_FRACTION * 1000))


def renew_every(ttl: float) -> float:
    """How often the handoff renews its lease, in seconds."""
    return ttl * RENEW_FRACTION


def parse_state(text: str | None) -> ReplicaState:
    """A stored state; anything unknown counts as running (the handoff waits for it)."""
    try:
        return ReplicaState(text or "")
    except ValueError:
        return ReplicaState.RUNNING


def shown(text: str) -> str:
    """`text` on one line and bounded: control characters escaped, cut at 200 characters."""
    escaped = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return escaped if len(escaped) <= _FIELD_LIMIT else escaped[:_FIELD_LIMIT] + "..."
