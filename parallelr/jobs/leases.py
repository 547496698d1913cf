"""Leases: who holds a run or a job, and until when. An expired lease means its holder is gone.

One rule for batch runners and (next) queue workers: a holder takes a lease of
:data:`LEASE_SECONDS` when it starts and renews it every :data:`RENEW_EVERY` seconds while it
is alive, so a holder that stops renewing (killed, frozen, cut off from the store) loses it at
most :data:`LEASE_SECONDS` later, and two renewals in a row may fail (a database locked for a
while) before that happens. Someone else may then take the run or job over; the old holder
finds out at its next renewal (:class:`~parallelr.jobs.errors.LeaseLost`) and stops writing.

Lease times are wall-clock epoch seconds (``time.time()``) because other processes, and other
hosts sharing a store, compare them: hosts sharing one store need synchronised clocks (NTP), and
:data:`LEASE_SECONDS` is long enough for a small skew.
"""

from __future__ import annotations

import os

import attrs

LEASE_SECONDS = 30.0  # how long a lease lasts without a renewal
RENEW_EVERY = 10.0  # how often a live holder renews it: two renewals may fail before it expires


@attrs.frozen
class Lease:
    """``owner`` holds the lease until ``expires_at`` (epoch seconds)."""

    owner: str
    expires_at: float

    @classmethod
    def starting(cls, owner: str, now: float, seconds: float = LEASE_SECONDS) -> Lease:
        return cls(owner, now + seconds)

    def expired(self, now: float) -> bool:
        return self.expires_at <= now


def new_owner(kind: str, pid: int, host: str) -> str:
    """A lease owner no other holder has: ``runner:4242@host/1a2b3c``. The random part tells apart
    two holders with the same PID (a PID reused after a reboot, or on two hosts)."""
    return f"{kind}:{pid}@{host}/{os.urandom(3).hex()}"
