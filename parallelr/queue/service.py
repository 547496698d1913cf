"""What users do to the queue, as functions on a store: the CLI and the dashboard both call these.

Every change is committed before it is reported, and then idle workers are woken (the store's
own notifications, PostgreSQL's NOTIFY, or else the datagrams of :mod:`.wake`) so that a new or
retried job starts at once, not at the next poll. Times come from the store's clock
(``store.now()``: the database server's for PostgreSQL), which every worker shares.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

import attrs

from parallelr.errors import ParallelrError, UsageError
from parallelr.jobs.opening import is_url
from parallelr.jobs.records import NewJob, WorkerRecord
from parallelr.jobs.sql_queue import PAUSED_ALL
from parallelr.paths import expand_user
from parallelr.paths import store_location as journal_location
from parallelr.queue import DB_VARIABLE, wake
from parallelr.queue.settings import STORE_PREFIX, QueueSettings, settings_from
from parallelr.queue.spec import check_cycles

# Shown states by what they mean, for the status block.
ACTIVE = ("pending", "scheduled", "waiting", "processing")


class JobNotFound(UsageError):
    def __init__(self, key: str) -> None:
        super().__init__(f"no job with ID {key!r} (see 'queuectl list')")
        self.key = key


class WrongState(ParallelrError):
    """The job is not in a state the action applies to (``dlq retry`` of a completed job)."""


def store_location(settings: Any, home: Path, db: Optional[str]) -> str:
    """``--db``, else ``$QUEUECTL_DB_PATH`` (a file, or a ``postgresql://`` URL), else the journal's
    database (``~/parallelr/state.db``)."""
    chosen = db or os.environ.get(DB_VARIABLE)
    if chosen and is_url(chosen):  # postgresql://...
        return chosen
    if chosen:
        return os.path.abspath(expand_user(chosen))
    return journal_location(settings, home)


def queue_settings(store: Any) -> QueueSettings:
    return settings_from(store.get_settings(STORE_PREFIX))


def wake_workers(store: Any, settings: Optional[QueueSettings] = None, now: Optional[float] = None) -> int:
    """Wake every live worker: something changed that may let it claim a job (or stop). Returns
    how many datagrams were sent (0 when the store notified its listeners itself)."""
    if store.notify_workers():
        return 0
    settings = settings or queue_settings(store)
    now = store.now() if now is None else now
    return wake.send(store.worker_wake_addresses(now - settings.lease_seconds))


def enqueue(store: Any, jobs: Iterable[NewJob], now: Optional[float] = None) -> List[str]:
    """Store ``jobs`` in one transaction (all or none) and wake the workers.

    Returns:
        The jobs' IDs, in order.

    Raises:
        JobError: a dependency cycle; DuplicateJob, UnknownDependency: see the store.
    """
    now = store.now() if now is None else now
    keys: List[str] = []
    edges: Dict[str, Sequence[str]] = {}

    def noted(source: Iterable[NewJob]) -> Iterator[NewJob]:
        for job in source:
            keys.append(job.key)
            if job.depends_on:
                edges[job.key] = job.depends_on
            yield job

    with store.transaction():
        store.enqueue_jobs(noted(jobs), now)
        check_cycles(edges)
    wake_workers(store, now=now)
    return keys


def find_job(store: Any, key: str, now: Optional[float] = None) -> Any:
    job = store.get_queue_job(key, store.now() if now is None else now)
    if job is None:
        raise JobNotFound(key)
    return job


def cancel(store: Any, key: str) -> str:
    """Cancel job ``key``. Returns ``"cancelled"``, or ``"stopping"`` for a running job (its
    worker stops it and records it cancelled).

    Raises:
        JobNotFound; WrongState: the job has finished.
    """
    job = find_job(store, key)
    if job.shown in ("completed", "dead", "cancelled"):
        raise WrongState(f"job {key!r} is {job.shown}: there is nothing to cancel")
    before = store.cancel_queue_job(key, store.now())
    if before is None:
        raise JobNotFound(key)
    wake_workers(store)
    return "stopping" if before == "running" else "cancelled"


def retry_dead(store: Any, keys: Optional[Sequence[str]]) -> int:
    """Dead jobs back to pending, attempts 0 (``keys``; None: every dead job), all or none.

    Raises:
        JobNotFound, WrongState: a key that is unknown or not dead (nothing is changed then).
    """
    wanted = None if keys is None else list(dict.fromkeys(keys))
    now = store.now()
    for key in wanted or ():
        job = find_job(store, key, now)
        if job.shown != "dead":
            raise WrongState(f"job {key!r} is {job.shown}, not dead: only dead jobs can be retried")
    count = store.retry_dead_jobs(wanted, now)
    if count:
        wake_workers(store)
    return count


# shown state -> the stored states purge may delete
PURGEABLE = {"completed": ("succeeded",), "dead": ("dead",), "cancelled": ("cancelled",)}


def purge(store: Any, states: Sequence[str], older_than: Optional[float]) -> int:
    """Delete finished jobs (``completed``, ``dead``, ``cancelled``) last changed more than
    ``older_than`` seconds ago (None: any), with their history."""
    stored = [state for shown in states for state in PURGEABLE[shown]]
    before = None if older_than is None else store.now() - older_than
    return store.purge_queue_jobs(stored, before)


def pause(store: Any, queue: Optional[str], paused: bool) -> None:
    store.set_paused(queue or PAUSED_ALL, paused)
    if not paused:
        wake_workers(store)


def stop_workers(store: Any) -> List[WorkerRecord]:
    """Ask every live worker to stop (gracefully: running jobs finish). Returns them."""
    settings = queue_settings(store)
    workers = store.request_worker_stop(store.now() - settings.lease_seconds)
    if not store.notify_workers():
        wake.send(worker.wake for worker in workers)
    return workers


@attrs.frozen
class QueueStatus:
    """The numbers of ``queuectl status``."""

    counts: Mapping[str, int]
    workers: Tuple[WorkerRecord, ...]
    paused: Tuple[str, ...]

    def count(self, state: str) -> int:
        return self.counts.get(state, 0)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def active(self) -> int:
        return sum(self.count(state) for state in ACTIVE)


def status(store: Any, queue: Optional[str] = None, now: Optional[float] = None) -> QueueStatus:
    settings = queue_settings(store)
    now = store.now() if now is None else now
    return QueueStatus(
        counts=store.queue_counts(now, queue),
        workers=tuple(store.list_workers(now - settings.lease_seconds)),
        paused=tuple(store.paused_queues()),
    )
