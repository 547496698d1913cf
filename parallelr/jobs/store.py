"""The JobStore and QueueStore protocols: what the journal, the queue and the dashboard may ask
of a store.

:class:`~parallelr.jobs.sqlite.SQLiteJobStore` is the default implementation and
:class:`~parallelr.jobs.postgres.PostgresJobStore` the second; both run the same statements
(:class:`~parallelr.jobs.sql_store.SqlJobStore`). One store object wraps one connection and is
used by one thread at a time (the journal's writer thread, or the main thread before and after a run).

Writes happen inside :meth:`JobStore.transaction`: everything in it commits together, or nothing
does. Every job state change goes through :mod:`parallelr.jobs.states`; every claim takes a
lease (:mod:`parallelr.jobs.leases`). Times are epoch seconds, passed in by the caller, so tests
can use any time they like; callers that share a store with other hosts take them from
:meth:`JobStore.now`, the store's clock (the database server's for PostgreSQL).
"""

from __future__ import annotations

from typing import (
    Any,
    ContextManager,
    Dict,
    Iterable,
    Iterator,
    List,
    Optional,
    Protocol,
    Sequence,
    Tuple,
    runtime_checkable,
)

from parallelr.jobs.batch import Record
from parallelr.jobs.leases import LEASE_SECONDS, Lease
from parallelr.jobs.records import (
    AttemptOutcome,
    AttemptRecord,
    ClaimedJob,
    JobRecord,
    NewJob,
    QueueAttempt,
    QueueJob,
    RunRecord,
    WorkerRecord,
)
from parallelr.model import RunInfo, RunSummary, Task, TaskResult


@runtime_checkable
class JobStore(Protocol):
    """A place that keeps runs, jobs, their attempts and their leases.

    Attributes:
        location: where the store is, for messages (a file path; a URL with its password as ``***``).
        address: what :func:`~parallelr.jobs.opening.open_store` takes to open it again.
    """

    location: str
    address: str

    # -- the store itself -----------------------------------------------------------------------
    def close(self) -> None:
        """Release the connection. Safe to call twice; the store cannot be used afterwards."""

    def transaction(self) -> ContextManager[Any]:
        """A write transaction: commits at the end of the ``with`` block, rolls back on an error.

        The write lock is taken at the start, so a claim inside it is atomic and a busy store
        fails at once rather than half-way through.

        Raises:
            StoreUnavailable: the store cannot be written (locked longer than the lock wait,
                read-only, disk full, corrupt).
        """

    def change_counter(self) -> int:
        """A number that changes whenever another connection commits: readers (the dashboard's
        live updates) compare it to learn that there is something new to read."""

    def now(self) -> float:
        """The store's clock in epoch seconds: what leases and due times are measured by. This
        host's clock for SQLite (one machine); the database server's for PostgreSQL, so that
        workers on hosts whose clocks differ agree."""

    def notify_workers(self) -> bool:
        """Tell every listening worker to look at the queue (PostgreSQL: ``NOTIFY``). Returns
        False when the store has no notifications (SQLite): the caller sends datagrams instead."""

    def listener(self) -> Optional[Any]:
        """A new connection of its own that waits for :meth:`notify_workers` (``fileno()`` for a
        selector, ``drain()`` after it is readable, ``close()``), or None (SQLite)."""

    # -- runs ------------------------------------------------------------------------------------
    def insert_run(self, run: RunInfo, create_time: Optional[float], host: str, lease: Lease,
                   source_stamp: Optional[Dict[str, Any]] = None) -> None:
        """Store a new batch run as ``running``, held by ``lease``, with no job stored yet
        (``planned`` 0: see :meth:`add_jobs`).

        Args:
            run: the run as the core describes it (ID, app, command, options, paths, ...).
            create_time: the runner's process start time (with ``run.pid``: proof of life).
            host: the runner's host name.
            lease: the runner's lease on the run; it renews it with :meth:`renew_run_lease`.
            source_stamp: how the task source looked (JSON-ready), checked by a resume that
                reads the source again.
        """

    def reopen_run(
        self, run: RunInfo, create_time: Optional[float], host: str, lease: Lease,
        previous_owner: Optional[str], now: float,
    ) -> bool:
        """Take over a stored run to resume it: it is ``running`` again, held by ``lease``.

        Args:
            run: the resuming run (same ID; new runner PID and log paths).
            create_time, host: the new runner, as for :meth:`insert_run`.
            lease: the new runner's lease.
            previous_owner: the lease owner the caller saw and judged gone (its lease expired, or
                its PID is dead on this host); taking the run from that owner is allowed.
            now: the time, to tell whether the stored lease has expired.

        Returns:
            False if another holder has it: a live lease of an owner other than
            ``previous_owner`` (a second resume got there first). Nothing was changed then.
        """

    def renew_run_lease(self, run_id: str, owner: str, expires_at: float) -> None:
        """Extend ``owner``'s lease on run ``run_id`` to ``expires_at``.

        Raises:
            LeaseLost: ``owner`` no longer holds the run (it expired and was taken over).
        """

    def finish_run(self, run_id: str, summary: RunSummary, now: float) -> None:
        """Record the end of a run: its state (finished, interrupted or stopped), exit code and
        counts; its lease is released."""

    # -- jobs ------------------------------------------------------------------------------------
    def insert_jobs(self, run_id: str, tasks: Iterable[Task], max_attempts: int, now: float) -> int:
        """Store every task of a new run as a ``pending`` job (position = ``task.index``).

        Returns:
            How many jobs were stored (also written as the run's task count and ``planned``).
        """

    def add_jobs(self, run_id: str, tasks: Iterable[Task], max_attempts: int, now: float) -> int:
        """Store some more tasks of a run as ``pending`` jobs (a run's jobs are stored in chunks
        while it runs); the run row is not changed (see :meth:`record_planned`).

        Returns:
            How many jobs were stored.
        """

    def record_planned(self, run_id: str, planned: int, digest: Optional[str],
                       task_count: Optional[int] = None) -> None:
        """The run's jobs 1..``planned`` are stored; ``digest`` is their digest, in order.

        Args:
            task_count: the run's task count, once the source is exhausted (None: unchanged).
        """

    def cancel_not_started(self, run_id: str, first: int, last: int, error: Optional[str], now: float) -> int:
        """The jobs at positions ``first``..``last`` never started: ``cancelled`` (one statement).

        Only jobs that may move to ``cancelled`` without an attempt (pending, failed, timeout)
        change; a job not stored yet is simply not there.

        Returns:
            How many jobs changed.
        """

    def enqueue(self, queue: str, tasks: Iterable[Task], max_attempts: int, now: float) -> List[int]:
        """Add tasks to the named queue as ``pending`` jobs, due at once.

        Returns:
            The new jobs' IDs, in the order of ``tasks``.
        """

    def apply_batch(self, records: Sequence[Record]) -> None:
        """Record task events (starts, attempt ends, the run's end and lease renewals), in order.

        Args:
            records: ``(name, arguments)`` pairs as described in :mod:`parallelr.jobs.batch`.

        Raises:
            IllegalTransition: a record would break the job transitions; nothing is written.
            LeaseLost: a ``renew_run_lease`` record found the lease taken over.
        """

    def task_started(self, run_id: str, task: Task, worker_id: int, now: float, owner: str) -> None:
        """One ``task_started`` record: the job runs ``task.attempt``, held by ``owner``."""

    def attempt_ended(
        self, run_id: str, result: TaskResult, now: float, retry_delay: Optional[float]
    ) -> None:
        """One ``attempt_ended`` record: the job's state and figures, and its history row.

        Args:
            retry_delay: seconds until the retry of a failed attempt (the job waits as
                ``failed``/``timeout``); None for the task's final result.
        """

    def claim(
        self, owner: str, now: float, *, queue: Optional[str] = None, run_id: Optional[str] = None,
        limit: int = 1, lease_seconds: float = LEASE_SECONDS,
    ) -> List[ClaimedJob]:
        """Claim up to ``limit`` due jobs of ``queue`` (or of run ``run_id``) for ``owner``.

        A job is due when it is pending, failed or timeout with ``next_attempt_at <= now``, or
        running under a lease that has expired (its holder is gone: it is taken back). A claimed
        job is ``running``, its attempt counted, leased to ``owner`` until ``now +
        lease_seconds``. Two claimers never get the same job. Call inside :meth:`transaction`.

        Returns:
            The claimed jobs, oldest due first; empty when nothing is due.
        """

    def renew_job_leases(self, owner: str, job_ids: Sequence[int], expires_at: float) -> int:
        """Extend ``owner``'s leases on these running jobs to ``expires_at``.

        Returns:
            How many were renewed; a job missing from the count is no longer ``owner``'s.
        """

    def requeue(self, run_id: str, job_ids: Optional[Sequence[int]], now: float, why: str) -> int:
        """Make jobs of a run ``pending`` again: every job not succeeded, or only ``job_ids``.

        A job still ``running`` belonged to a holder that is gone: its unfinished attempt is
        recorded as CANCELLED with the error ``why``, so the history has no gap.

        Returns:
            How many jobs are pending now.
        """

    # -- reading ---------------------------------------------------------------------------------
    def get_run(self, run_id: str) -> Optional[RunRecord]:
        """The run ``run_id``, or None."""

    def latest_run(self, app_name: Optional[str] = None) -> Optional[RunRecord]:
        """The newest run (of ``app_name`` if given), or None."""

    def list_runs(self, limit: Optional[int] = None) -> List[RunRecord]:
        """Runs, newest first; at most ``limit`` (None: all)."""

    def job_counts(self, run_id: str) -> Dict[str, int]:
        """``{state: count}`` of a run's jobs (states without jobs are absent)."""

    def state_counts(self, run_id: str) -> Dict[Tuple[str, str], int]:
        """``{(state, last_status or ""): count}`` of a run's jobs."""

    def iter_jobs(
        self, run_id: str, *, exclude_succeeded: bool = False, states: Optional[Sequence[str]] = None,
        after: int = -1,
    ) -> Iterator[JobRecord]:
        """A run's jobs by position (only ``states`` if given; positions after ``after``), read a
        page at a time."""

    def jobs_by_ids(self, job_ids: Sequence[int]) -> List[JobRecord]:
        """The jobs with these IDs, by run and position; unknown IDs are simply absent."""

    def iter_jobs_by_ids(self, job_ids: Sequence[int]) -> Iterator[JobRecord]:
        """The jobs with these IDs in ID order, a page at a time."""

    def dead_jobs(self, run_id: Optional[str] = None) -> Iterator[JobRecord]:
        """The dead letters of batch runs: jobs whose last attempt failed (of run ``run_id`` if given),
        by ID. The queue's dead jobs are not among them (see ``iter_queue_jobs``)."""

    def attempts_of(self, job_id: int) -> List[AttemptRecord]:
        """The history of one job, by attempt number."""

    def run_attempts(self, run_id: str) -> Iterator[Tuple[int, str, AttemptRecord]]:
        """``(position, source, attempt)`` of every attempt of a run, by start time (its timeline)."""


@runtime_checkable
class QueueStore(Protocol):
    """What the queue (:mod:`parallelr.queue`) and the dashboard ask of a store, beside
    :class:`JobStore`. Queue jobs are named by their ID (``key``); ``now`` is passed in as above.

    Claims are atomic (two workers never hold one job), every claim takes a lease the worker
    renews, and a job whose lease expired is taken back by the next claim. Writes happen in the
    caller's :meth:`JobStore.transaction` or in one of their own.
    """

    # -- enqueue and claim --
    def enqueue_jobs(self, jobs: Iterable[NewJob], now: float) -> int:
        """Store ``jobs`` as pending (scheduled, or waiting for dependencies); all or none.

        Raises:
            DuplicateJob: an ID that exists already (or comes twice).
            UnknownDependency: ``depends_on`` names a job that is neither stored nor in ``jobs``.
        """

    def claim_queue_jobs(self, owner: str, now: float, queues: Sequence[str], limit: int,
                         lease_seconds: float, reclaim: bool = True) -> List[QueueJob]:
        """Up to ``limit`` due jobs of ``queues`` (empty: all), by priority, due time, enqueue order,
        leased to ``owner``; with ``reclaim``, expired leases are taken back first (a ``LOST``
        attempt, counted)."""

    def next_due_at(self, queues: Sequence[str], now: float) -> Optional[float]:
        """When a job of ``queues`` may next be claimed (due time or lease expiry), or None."""

    def finish_queue_attempt(self, owner: str, result: TaskResult, now: float, backoff_base: float,
                             backoff_max: float) -> AttemptOutcome:
        """Record the end of the attempt of job row ``result.task.index``: completed, failed (its retry
        due ``min(backoff_max, backoff_base ** attempts)`` s later), dead, cancelled (the user asked),
        or, stopped by a worker's shutdown, pending again with the attempt not counted.

        Raises:
            LeaseLost: ``owner`` no longer holds the job.
        """

    def renew_queue_leases(self, owner: str, rows: Sequence[int], expires_at: float) -> List[int]:
        """Extend ``owner``'s leases; returns the rows it still holds."""

    def release_queue_jobs(self, owner: str, rows: Sequence[int], now: float) -> int:
        """Claimed jobs that never started go back to pending as if never claimed."""

    def cancel_requested(self, owner: str) -> List[int]:
        """Rows of ``owner``'s running jobs whose cancel a user asked for."""

    # -- reading --
    def get_queue_job(self, key: str, now: float) -> Optional[QueueJob]: ...

    def iter_queue_jobs(self, now: float, *, states: Sequence[str] = (), queue: Optional[str] = None,
                        limit: Optional[int] = None, order: str = "created") -> Iterator[QueueJob]:
        """Jobs in the shown ``states`` (:data:`~parallelr.jobs.states.SHOWN_STATES`), paged."""

    def queue_counts(self, now: float, queue: Optional[str] = None) -> Dict[str, int]:
        """``{shown state: count}``."""

    def queue_attempts(self, row: int) -> List[QueueAttempt]: ...

    def find_queue_jobs(self, now: float, *, states: Sequence[str] = (), queue: Optional[str] = None,
                        text: Optional[str] = None, before: Optional[int] = None,
                        limit: int = 50) -> List[QueueJob]:
        """One page, newest first (rows below ``before``), of the jobs in the shown ``states``, of
        ``queue``, whose ID or command contains ``text``: the dashboard's job list."""

    def count_queue_jobs(self, now: float, *, states: Sequence[str] = (), queue: Optional[str] = None,
                         text: Optional[str] = None) -> int:
        """How many jobs :meth:`find_queue_jobs` pages through."""

    def queue_finishes(self, since: float, bucket: float) -> Dict[int, int]:
        """``{bucket: attempts ended in it}``, bucket 0 starting at ``since``, ``bucket`` seconds each."""

    def queue_names(self) -> List[str]: ...

    def dependencies_of(self, row: int, now: float) -> List[Tuple[str, str]]:
        """``(key, shown state)`` of the jobs job ``row`` depends on."""

    # -- what users do --
    def cancel_queue_job(self, key: str, now: float) -> Optional[str]:
        """Cancel (or, running, mark for its worker to stop); the state before, None if unknown."""

    def retry_dead_jobs(self, keys: Optional[Sequence[str]], now: float) -> int:
        """Dead jobs (``keys``, None: all) back to pending with attempts 0."""

    def purge_queue_jobs(self, states: Sequence[str], older_than: Optional[float]) -> int:
        """Delete finished jobs in stored ``states`` last changed before ``older_than``."""

    def get_settings(self, prefix: str = "") -> Dict[str, str]: ...

    def set_setting(self, key: str, value: Optional[str]) -> None: ...

    def set_paused(self, queue: str, paused: bool) -> None:
        """Pause or resume ``queue`` (``"*"``: every queue)."""

    def paused_queues(self) -> List[str]: ...

    # -- workers --
    def register_worker(self, worker: WorkerRecord) -> None: ...

    def worker_heartbeat(self, owner: str, now: float, jobs_done: int = 0) -> bool:
        """Record that ``owner`` lives (and its count of finished jobs); True when asked to stop."""

    def worker_stop_requested(self, owner: str) -> bool: ...

    def remove_worker(self, owner: str) -> None: ...

    def list_workers(self, alive_since: Optional[float] = None) -> List[WorkerRecord]: ...

    def worker_wake_addresses(self, alive_since: float) -> List[str]: ...

    def request_worker_stop(self, alive_since: float) -> List[WorkerRecord]: ...

    def forget_workers(self, heartbeat_before: float) -> int: ...
