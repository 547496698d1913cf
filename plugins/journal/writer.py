"""The journal's writer thread: task records leave the scheduler thread in microseconds.

The reporter hooks run on the scheduler's thread, where every millisecond delays the next task.
They only put a small record on a queue. One writer thread takes whatever is queued, applies
it all in ONE transaction and commits once (group commit).

A commit costs far more than the statements in it, so commits are spaced at least
:data:`COMMIT_INTERVAL` apart: when the run is quiet the writer commits a single record as soon
as it arrives; when tasks finish faster than that, the records that arrive within the interval
share one commit. Either way a finished task is on disk within a few milliseconds (a kill -9 of
the runner right after does not lose it). A flush or close never waits for the interval.

The writer also keeps the run's lease (:mod:`parallelr.jobs.leases`): every
:data:`~parallelr.jobs.leases.RENEW_EVERY` seconds it adds a renewal to the next transaction,
waking for it when the run is quiet (it sleeps exactly until then, it does not poll). If the
lease was taken over meanwhile (the run looked dead and was resumed elsewhere), that
transaction is rolled back and nothing more is written: the run belongs to its new holder.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from typing import Any, List, Optional

import attrs

from parallelr.jobs.batch import Record
from parallelr.jobs.errors import LeaseLost
from parallelr.jobs.leases import LEASE_SECONDS, RENEW_EVERY
from parallelr.jobs.store import JobStore

log = logging.getLogger("parallelr.journal")

_STOP = object()
COMMIT_INTERVAL = 0.005  # seconds: at most ~200 commits a second, whatever the task rate


@attrs.frozen
class Renewal:
    """Renew ``owner``'s lease on run ``run_id`` every ``every`` seconds, to ``length`` seconds ahead."""

    run_id: str
    owner: str
    every: float = RENEW_EVERY
    length: float = LEASE_SECONDS

    def record(self) -> Record:
        return ("renew_run_lease", (self.run_id, self.owner, time.time() + self.length))


class JournalWriter:
    """Applies records to ``store`` on its own thread; ``close()`` drains, commits and joins."""

    def __init__(self, store: JobStore, renewal: Optional[Renewal] = None) -> None:
        self.store = store
        self.renewal = renewal
        self.batches = 0  # transactions committed (tests check the grouping)
        self.records = 0  # task records committed (renewals not counted)
        self.renewals = 0
        self.failure: Optional[str] = None
        self.lost: Optional[LeaseLost] = None  # set once the run's lease was taken over
        self._renewal_failed = False
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="parallelr-journal", daemon=True)
        self._thread.start()

    def put(self, method: str, *args: Any) -> None:
        """Queue the record ``(method, args)`` (see :mod:`parallelr.jobs.batch`): applied later, on
        the writer thread, inside a transaction. The arguments must be immutable (they are read
        on another thread)."""
        self._queue.put((method, args))

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Wait until everything queued so far is committed (or failed)."""
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def close(self, timeout: Optional[float] = None) -> None:
        """Commit what is queued and stop the thread. Safe to call twice."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout)

    def _take(self, not_before: float, renew_at: float) -> List[Any]:
        """Block for one item (at most until ``renew_at``, monotonic: then return nothing); if it
        is a record and the last commit was less than COMMIT_INTERVAL ago, let more records
        gather until ``not_before`` (monotonic); then take everything queued. Sleeping instead
        of waiting on the queue item by item means one wake-up per commit, not one per task: the
        scheduler's thread keeps the GIL."""
        try:
            if math.isinf(renew_at):
                first = self._queue.get()
            else:
                first = self._queue.get(timeout=max(0.0, renew_at - time.monotonic()))
        except queue.Empty:
            return []
        if isinstance(first, tuple):
            remaining = not_before - time.monotonic()
            if remaining > 0:
                time.sleep(remaining)
        items = [first]
        while True:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                return items

    def _loop(self) -> None:
        last_commit = float("-inf")
        renewal = self.renewal
        renew_at = time.monotonic() + renewal.every if renewal is not None else math.inf
        while True:
            items = self._take(last_commit + COMMIT_INTERVAL, renew_at)
            records = [item for item in items if isinstance(item, tuple)]
            stopping = any(item is _STOP for item in items)
            finishing = any(record[0] == "finish_run" for record in records)
            if renewal is not None and not (stopping or finishing) and time.monotonic() >= renew_at:
                records.append(renewal.record())
                renew_at = time.monotonic() + renewal.every
            if finishing:  # finish_run releases the lease: there is nothing left to renew
                renewal = None
            if records:
                self._apply(records)
                last_commit = time.monotonic()
            for item in items:
                if isinstance(item, threading.Event):
                    item.set()
            if stopping:
                return

    def _apply(self, records: List[Record]) -> None:
        if self.lost is not None:  # the run is someone else's now: write nothing more
            return
        renewals = sum(1 for name, _ in records if name == "renew_run_lease")
        try:
            with self.store.transaction():
                self.store.apply_batch(records)
        except LeaseLost as exc:
            self.lost = exc
            log.warning(
                "journal %s: %s (it expired and another process took the run over); this runner"
                " records nothing more", self.store.location, exc,
            )
            return
        except Exception as exc:  # a store error, or a bug: neither may kill the writer, the run goes on
            self._failed(exc, len(records) - renewals)
            return
        self.batches += 1
        self.records += len(records) - renewals
        self.renewals += renewals

    def _failed(self, exc: BaseException, count: int) -> None:
        """Warn once about lost task records, once about failed renewals (only renewals failed:
        nothing is lost, the next one tries again RENEW_EVERY seconds later)."""
        reason = getattr(exc, "reason", None) or f"{exc}"
        if count == 0:
            if not self._renewal_failed:
                log.warning("journal %s: cannot renew the run's lease: %s", self.store.location, reason)
            self._renewal_failed = True
            return
        first = self.failure is None
        self.failure = reason
        if first:
            log.warning(
                "journal %s: cannot record %d task update(s): %s; this run may not resume exactly",
                self.store.location, count, reason,
            )

