"""The journal's writer thread: task records leave the scheduler thread in microseconds.

The reporter hooks run on the scheduler's thread, where every millisecond delays the next task.
They only put a small record on a queue. One writer thread takes whatever is queued, applies
it all in ONE transaction and commits once (group commit).

A commit costs far more than the statements in it, so commits are spaced at least
:data:`COMMIT_INTERVAL` apart: when the run is quiet the writer commits a single record as soon
as it arrives; when tasks finish faster than that, the records that arrive within the interval
share one commit. Either way a finished task is on disk within a few milliseconds (a kill -9 of
the runner right after does not lose it). A flush or close never waits for the interval.

**Nothing is dropped because the store is busy.** A commit that fails for a reason that may
pass (another process holds the database locked, the disk is full: the store says
``transient``) keeps its records, in order, in front of everything queued after them, and is
tried again after a back-off (:data:`RETRY_FIRST` doubling up to :data:`RETRY_MAX`; the writer
sleeps until then or until a new record comes, it never spins). Only a record that fails for a
reason that will not pass (a corrupt file, a bug) is given up, alone: the others of its batch
are written one by one. What was given up, or is still waiting when the run ends, is reported
by :meth:`JournalWriter.problem` for the run's summary.

The writer also keeps the run's lease (:mod:`parallelr.jobs.leases`): every
:data:`~parallelr.jobs.leases.RENEW_EVERY` seconds it adds a renewal to the next transaction,
waking for it when the run is quiet (it sleeps exactly until then, it does not poll). If the
lease was taken over meanwhile (the run looked dead and was resumed elsewhere), that
transaction is rolled back and nothing more is written: the run belongs to its new holder.

With a :class:`~.planning.Planner` the writer also stores the run's jobs while the run goes on:
a chunk per transaction whenever it has nothing else to do, and, before the records of a
batch, every job they name that is not stored yet.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from typing import Any, Callable, List, Optional

import attrs

from parallelr.jobs.batch import ATTEMPT_ENDED, TASK_STARTED, Record
from parallelr.jobs.errors import LeaseLost
from parallelr.jobs.leases import LEASE_SECONDS, RENEW_EVERY
from parallelr.jobs.store import JobStore
from parallelr.plugins.journal.planning import Planner

log = logging.getLogger("parallelr.journal")

COMMIT_INTERVAL = 0.005  # seconds: at most ~200 commits a second, whatever the task rate
RETRY_FIRST = 0.05  # seconds before a failed commit is tried again; doubles each time ...
RETRY_MAX = 2.0  # ... up to this (a lock wait of the store comes on top of it)
RENEW = "renew_run_lease"
NOT_STARTED = "cancel_not_started"
ALL_POSITIONS = 2**62  # the last position of a range that covers a whole run (a safety net, not results)


@attrs.frozen
class Renewal:
    """Renew ``owner``'s lease on run ``run_id`` every ``every`` seconds, to ``length`` seconds
    ahead of ``clock`` (the store's: a PostgreSQL journal's leases follow the server's clock)."""

    run_id: str
    owner: str
    every: float = RENEW_EVERY
    length: float = LEASE_SECONDS
    clock: Callable[[], float] = time.time

    def record(self) -> Record:
        return (RENEW, (self.run_id, self.owner, self.clock() + self.length))


@attrs.frozen
class _Stop:
    deadline: float  # monotonic: give up what still cannot be written then


def is_transient(exc: BaseException) -> bool:
    """A failure that may pass if the same write is tried again later (the store says so)."""
    return bool(getattr(exc, "transient", False))


def task_results(records: List[Record]) -> int:
    """How many task results (final or retried attempts, tasks that never started) ``records`` hold."""
    count = 0
    for name, args in records:
        if name == ATTEMPT_ENDED:
            count += 1
        elif name == NOT_STARTED and args[2] != ALL_POSITIONS:
            count += args[2] - args[1] + 1
    return count


def task_updates(records: List[Record]) -> int:
    """The records that are not lease renewals (those are only tried again, never missed)."""
    return sum(1 for name, _ in records if name != RENEW)


class JournalWriter:
    """Applies records to ``store`` on its own thread; ``close()`` drains, commits and joins."""

    def __init__(self, store: JobStore, renewal: Optional[Renewal] = None,
                 planner: Optional[Planner] = None) -> None:
        self.store = store
        self.renewal = renewal
        self.planner = planner
        self.batches = 0  # transactions committed (tests check the grouping)
        self.records = 0  # task records committed (renewals not counted)
        self.renewals = 0
        self.retries = 0  # commits tried again after a transient failure
        self.failure: Optional[str] = None  # why the latest write failed (None once one succeeds)
        self.last_failure: Optional[str] = None  # why a write failed last, even if it passed since
        self.lost: Optional[LeaseLost] = None  # set once the run's lease was taken over
        self.dropped_results = 0  # task results given up: they are not in the store
        self.dropped_updates = 0  # task records of any kind given up
        self._pending: List[Record] = []  # written by the writer thread only: not yet committed
        self._pending_results = 0  # the task results among them (for problem(), from any thread)
        self._warned_waiting = False
        self._renewal_failed = False
        self._plan_retry_at = 0.0  # monotonic: planning failed (a lock); not before then again
        self._plan_backoff = RETRY_FIRST / 2
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="parallelr-journal", daemon=True)
        self._thread.start()

    def put(self, method: str, *args: Any) -> None:
        """Queue the record ``(method, args)`` (see :mod:`parallelr.jobs.batch`): applied later, on
        the writer thread, inside a transaction. The arguments must be immutable (they are read
        on another thread)."""
        self._queue.put((method, args))

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Wait until everything queued so far is committed (or given up); False on a timeout,
        e.g. while another process keeps the database locked."""
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def close(self, timeout: Optional[float] = None) -> bool:
        """Commit what is queued and stop the thread, trying a failed commit again for up to
        ``timeout`` seconds (None: until it is written). True once the thread has ended. Safe to
        call twice."""
        if self._thread.is_alive():
            deadline = math.inf if timeout is None else time.monotonic() + timeout
            self._queue.put(_Stop(deadline))
            self._thread.join(None if timeout is None else timeout + 1.0)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def problem(self) -> Optional[str]:
        """One line for the run's summary if task results are not in the store (given up, or
        still waiting for a lock), else None."""
        missing = self.dropped_results + self._pending_results
        if missing == 0:
            return None
        reason = self.failure or self.last_failure or "unknown error"
        return (f"journal: {missing} task result(s) could not be recorded in {self.store.location}"
                f" ({reason}); --resume may run them again")

    # -- the thread ---------------------------------------------------------------------------
    def _take(self, not_before: float, until: float) -> List[Any]:
        """Block for one item (at most until ``until``, monotonic: then return nothing; at or
        before now: do not block); if it is a record and the last commit was less than
        COMMIT_INTERVAL ago, let more records gather until ``not_before`` (monotonic); then take
        everything queued. Sleeping instead of waiting on the queue item by item means one
        wake-up per commit, not one per task: the scheduler's thread keeps the GIL."""
        try:
            if math.isinf(until):
                first = self._queue.get()
            else:
                wait = until - time.monotonic()
                first = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
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
        retry_at = 0.0  # monotonic: when the pending records may be tried again
        backoff = RETRY_FIRST
        flushes: List[threading.Event] = []
        stop: Optional[_Stop] = None
        pending = self._pending
        while True:
            planning = stop is None and not pending and self._planning()
            if (planning and time.monotonic() >= self._plan_retry_at) or (stop is not None and not pending):
                until = 0.0  # work to do now: do not block on the queue
            else:
                until = min(renew_at, retry_at if pending else math.inf,
                            self._plan_retry_at if planning else math.inf,
                            stop.deadline if stop is not None else math.inf)
            for item in self._take(last_commit + COMMIT_INTERVAL, until):
                if isinstance(item, tuple):
                    pending.append(item)
                elif isinstance(item, threading.Event):
                    flushes.append(item)
                elif isinstance(item, _Stop):
                    stop = item
            self._pending_results = task_results(pending)
            finishing = any(name == "finish_run" for name, _ in pending)
            now = time.monotonic()
            if renewal is not None and stop is None and not finishing and now >= renew_at:
                if not any(name == RENEW for name, _ in pending):
                    pending.append(renewal.record())
                renew_at = now + renewal.every
            if finishing:  # finish_run releases the lease: there is nothing left to renew
                renewal = None
            if pending and now >= retry_at:
                if self._write(pending):
                    pending.clear()
                    backoff = RETRY_FIRST
                else:  # kept, in order; tried again after the back-off (or at a new record's batch)
                    self.retries += 1
                    retry_at = time.monotonic() + backoff
                    backoff = min(RETRY_MAX, backoff * 2)
                last_commit = time.monotonic()
            elif planning and now >= self._plan_retry_at:
                self._plan_chunk()
            self._pending_results = task_results(pending)
            if not pending:
                for event in flushes:
                    event.set()
                flushes.clear()
            if stop is not None and (not pending or time.monotonic() >= stop.deadline):
                if pending:
                    self._give_up(pending, "the run ended first")
                for event in flushes:
                    event.set()
                return

    def _planning(self) -> bool:
        return self.planner is not None and self.lost is None and self.planner.has_work()

    def _plan_chunk(self) -> None:
        planner = self.planner
        assert planner is not None
        planner.stage_chunk()
        try:
            with self.store.transaction():
                planner.write(self.store, time.time())
        except Exception as exc:  # a busy store: the staged jobs stay staged, tried again later
            self._note_failure(exc)
            if not is_transient(exc):
                planner.give_up(f"{getattr(exc, 'reason', None) or exc}")
            self._plan_backoff = min(RETRY_MAX, self._plan_backoff * 2)
            self._plan_retry_at = time.monotonic() + self._plan_backoff
            return
        self._plan_backoff = RETRY_FIRST / 2
        planner.committed()

    def _write(self, records: List[Record]) -> bool:
        """Commit ``records`` (and the jobs they need stored first); False when they must be
        tried again later (a transient failure), True when they are done with: written, or
        given up."""
        if self.lost is not None:  # the run is someone else's now: write nothing more
            return True
        try:
            self._commit(records)
        except LeaseLost as exc:
            self.lost = exc
            log.warning(
                "journal %s: %s (it expired and another process took the run over); this runner"
                " records nothing more", self.store.location, exc,
            )
            return True
        except Exception as exc:  # a store error, or a bug: neither may kill the writer, the run goes on
            self._note_failure(exc)
            if is_transient(exc):
                self._warn_waiting(records, exc)
                return False
            return self._one_by_one(records)
        self._committed(records)
        return True

    def _commit(self, records: List[Record]) -> None:
        planner = self.planner
        with self.store.transaction():
            if planner is not None:
                known = {task.index: task for task in map(_task_of, records) if task is not None}
                if known:
                    planner.stage_through(max(known), known)
                planner.write(self.store, time.time())
            self.store.apply_batch(records)
        if planner is not None:
            planner.committed()

    def _committed(self, records: List[Record]) -> None:
        renewals = sum(1 for name, _ in records if name == RENEW)
        self.batches += 1
        self.records += len(records) - renewals
        self.renewals += renewals
        if self.failure is not None and self._warned_waiting:
            log.warning("journal %s: recorded the task update(s) that waited (%s)", self.store.location,
                        self.failure)
        self.failure = None
        self._warned_waiting = False

    def _one_by_one(self, records: List[Record]) -> bool:
        """A batch failed for a reason that will not pass: write its records one at a time so
        that only the bad ones are given up."""
        for number, record in enumerate(records):
            try:
                self._commit([record])
            except LeaseLost as exc:
                self.lost = exc
                return True
            except Exception as exc:
                self._note_failure(exc)
                if is_transient(exc):  # it is busy now after all: keep this one and the rest
                    del records[:number]
                    self._warn_waiting(records, exc)
                    return False
                self._give_up([record], getattr(exc, "reason", None) or f"{exc}")
                continue
            self._committed([record])
        return True

    def _note_failure(self, exc: BaseException) -> None:
        self.failure = self.last_failure = getattr(exc, "reason", None) or f"{exc}"

    def _warn_waiting(self, records: List[Record], exc: BaseException) -> None:
        """Once per stretch of failures: the records wait (renewals alone: a lease warning)."""
        count = task_updates(records)
        reason = getattr(exc, "reason", None) or f"{exc}"
        if count == 0:
            if not self._renewal_failed:
                log.warning("journal %s: cannot renew the run's lease: %s", self.store.location, reason)
            self._renewal_failed = True
            return
        if not self._warned_waiting:
            log.warning("journal %s: cannot record %d task update(s) yet: %s; keeping them and trying again",
                        self.store.location, count, reason)
        self._warned_waiting = True

    def _give_up(self, records: List[Record], reason: str) -> None:
        count = task_updates(records)
        self.dropped_results += task_results(records)
        self.dropped_updates += count
        if count:
            log.warning("journal %s: cannot record %d task update(s): %s; this run may not resume exactly",
                        self.store.location, count, self.failure or reason)


def _task_of(record: Record) -> Any:
    """The task a task record is about; None for the others (they need no job stored first)."""
    name, args = record
    if name == TASK_STARTED:
        return args[1]
    if name == ATTEMPT_ENDED:
        return args[1].task
    return None
