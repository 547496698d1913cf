"""The journal of one run: a plugin object registered per run, holding that run's store and writer.

:func:`parallelr.plugins.journal.plugin.parallelr_configure` registers a fresh
:class:`JournalRun` on the run's plugin manager (the way pytest registers its TerminalReporter),
so no module global holds the state of a run and two runs in one process never share a
journal. The object answers for its own config only (``parallelr_resume``) and, once a run is
planned, for that run only (its ID), whatever else the manager sees.

The run and its first tasks are stored before the first task starts (``parallelr_run_planned``,
on the main thread, so a database that cannot be used stops the run with one line before
anything runs); the writer thread stores the rest while the run goes on (:mod:`.planning`).
After that the task hooks only queue records for the writer thread (:mod:`.writer`), which also
renews the run's lease. Tasks that never got a slot (Ctrl+C with a million left) are queued as
ranges of positions, one record per range, not one per task.

Before the summary is built (``parallelr_run_problems``) the run waits for the writer to commit
everything, up to :func:`flush_timeout` seconds (a database another process keeps locked); what
could still not be recorded is one line of the summary and makes the exit status 1.
"""

from __future__ import annotations

import atexit
import logging
import time
from pathlib import Path
from typing import Any, List, Optional, Tuple

import attrs

from parallelr.errors import UsageError
from parallelr.hookspecs import hookimpl
from parallelr.jobs.leases import Lease, new_owner
from parallelr.jobs.liveness import own_create_time, this_host
from parallelr.jobs.store import JobStore
from parallelr.model import ResumePlan, RunInfo, RunSummary, Task, TaskResult, TaskStatus
from parallelr.paths import store_location as journal_location
from parallelr.plugins.journal import processes
from parallelr.plugins.journal.database import (
    JournalUnavailable,
    journal_transaction,
    open_journal,
    reading_journal,
    seconds_from_environment,
)
from parallelr.plugins.journal.planning import Planner, Tail, derive_tail, source_stamp
from parallelr.plugins.journal.resume import Selection, build_plan, check_not_running, parse_only
from parallelr.plugins.journal.writer import ALL_POSITIONS, NOT_STARTED, JournalWriter, Renewal

log = logging.getLogger("parallelr.journal")

# Why the unfinished attempt of a task found "running" in a resumed run ended.
RUNNER_DIED = "the runner of this run died while the task ran; run again by --resume"
FLUSH_TIMEOUT_VARIABLE = "PARALLELR_JOURNAL_FLUSH_TIMEOUT"
DEFAULT_FLUSH_TIMEOUT = 120.0  # seconds the end of a run waits for the journal (another process's lock)
AFTER_FAILURE_TIMEOUT = 5.0  # once the journal failed: how long the run's end still tries
PATIENCE = 2.0  # seconds of waiting at the end before the run says that it waits


def flush_timeout() -> float:
    """How long the end of a run waits for its records to be committed (seconds)."""
    return seconds_from_environment(FLUSH_TIMEOUT_VARIABLE, DEFAULT_FLUSH_TIMEOUT)


def journal_enabled(run: RunInfo) -> bool:
    """Off with --no-journal or ``journal.enabled: false``."""
    return not run.options.get("no_journal") and bool(run.settings.journal.enabled)


def open_for_resume(path: str) -> Optional[JobStore]:
    try:
        return open_journal(path, create=False)
    except JournalUnavailable as exc:  # --no-journal is no way out here
        raise exc.without_hint() from None


@attrs.frozen
class Resuming:
    """What ``parallelr_resume`` planned, for ``parallelr_run_planned``: the run, the explicit job
    IDs (None: every job not succeeded), the lease owner it judged gone, and the tasks that
    have no job yet (read again from the source)."""

    run_id: str
    job_ids: Optional[Tuple[int, ...]]
    previous_owner: Optional[str]
    tail: Optional[Tail] = None


class JournalRun:
    """The journal of the run of ``config``: its store, its writer, its lease."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.run_id: Optional[str] = None  # the run this object records, once planned
        self.resuming: Optional[Resuming] = None
        self.store: Optional[JobStore] = None
        self.writer: Optional[JournalWriter] = None
        self.planner: Optional[Planner] = None
        self.job_owner = ""  # the jobs' lease owner, as before leases: pid:<runner pid>
        # Tasks that never got a slot, gathered into one range [first, last, error, time]
        self._not_started: Optional[List[Any]] = None
        self._failed = False  # the writer could not commit everything by the end of the run

    # -- resume ---------------------------------------------------------------------------------
    @hookimpl
    def parallelr_resume(self, config: Any) -> Optional[ResumePlan]:
        if config is not self.config:
            return None
        request = config.request
        run_id = request.option("resume")
        if not run_id:
            return None
        only = parse_only(request.option("resume_only"))
        path = journal_location(config.settings, config.home)
        store = open_for_resume(path)
        if store is None:
            raise UsageError(f"--resume: the journal {path} is gone")
        try:
            with reading_journal(store):
                run = store.get_run(run_id)
                if run is None:
                    raise UsageError(f"unknown run {run_id!r} in {store.location}")
                check_not_running(run)
                mode, ids = only if only is not None else ("unfinished", ())
                # the tasks without a job, read again from the source (checked first)
                tail = derive_tail(config, run) if mode == "unfinished" else None
                if request.execute:  # a dry run changes nothing, not even a dead run's leftover processes
                    _terminate_leftovers(run_id)
                plan, chosen = build_plan(store, Selection(run_id, mode, ids), tail)
        finally:
            store.close()
        self.resuming = Resuming(run_id, None if chosen is None else tuple(chosen), run.lease_owner, tail)
        return plan

    # -- the run --------------------------------------------------------------------------------
    @hookimpl
    def parallelr_run_planned(self, run: RunInfo, tasks: Any) -> None:
        if self.run_id is not None or not run.run_id:
            return  # this object records one run
        self.run_id = run.run_id
        if not journal_enabled(run):
            return
        store = open_journal(journal_location(run.settings, Path(run.paths.home)))
        assert store is not None
        now = store.now()  # the store's clock: a lease other hosts judge (PostgreSQL) follows it
        lease = Lease.starting(new_owner("runner", run.pid, this_host()), now)
        resuming = self.resuming if run.resumed and self.resuming is not None else None
        try:
            with journal_transaction(store):
                planner = self._store_run(store, run, tasks, lease, resuming, now)
        except BaseException:
            store.close()
            raise
        if planner is not None:
            planner.committed()
            if planner.complete:
                planner = None  # a small run: every job is stored already
        self.store = store
        self.planner = planner
        self.job_owner = f"pid:{run.pid}"
        self.writer = JournalWriter(store, Renewal(run.run_id, lease.owner, clock=store.now), planner)
        # A run that ends without parallelr_run_finish (an exception in the core, sys.exit)
        # still commits what it queued: the writer is a daemon thread, so drain it at exit.
        atexit.register(self.close)

    @staticmethod
    def _store_run(store: JobStore, run: RunInfo, tasks: Any, lease: Lease,
                   resuming: Optional[Resuming], now: float) -> Optional[Planner]:
        """The run row (new, or taken over to resume it) and its first jobs; the planner that
        stores the rest while the run goes on."""
        create_time, host = own_create_time(), this_host()
        assert run.run_id is not None
        if resuming is not None and resuming.run_id == run.run_id and store.get_run(run.run_id):
            if not store.reopen_run(run, create_time, host, lease, resuming.previous_owner, now):
                current = store.get_run(run.run_id)
                if current is not None:
                    check_not_running(current)  # a second resume got there first
                raise UsageError(f"run {run.run_id} was taken over by another process meanwhile")
            store.requeue(run.run_id, resuming.job_ids, now, RUNNER_DIED)
            tail = resuming.tail
            if tail is None or tail.count == 0:
                return None
            planner = Planner(run.run_id, tail, max_attempts=_max_attempts(run), planned=tail.start,
                              digest=tail.digest.copy(), bounded=tail.bounded)
        else:
            stamp = source_stamp(run.options)
            store.insert_run(run, create_time, host, lease, stamp)
            planner = Planner(run.run_id, tasks, max_attempts=_max_attempts(run), bounded="file" in stamp)
        planner.stage_upfront()
        planner.write(store, now)
        return planner

    def _writer_for(self, run: RunInfo) -> Optional[JournalWriter]:
        """This run's writer, or None for another run (or no journal)."""
        return self.writer if run.run_id == self.run_id else None

    def _put(self, writer: JournalWriter, method: str, *args: Any) -> None:
        self._put_not_started(writer)  # records stay in the order they happened
        writer.put(method, *args)

    def _put_not_started(self, writer: JournalWriter) -> None:
        gathered, self._not_started = self._not_started, None
        if gathered is not None:
            first, last, error, at = gathered
            writer.put(NOT_STARTED, self.run_id, first, last, error, at)

    @hookimpl
    def parallelr_task_start(self, run: RunInfo, task: Task, worker_id: int) -> None:
        writer = self._writer_for(run)
        if writer is not None:
            self._put(writer, "task_started", self.run_id, task, worker_id, time.time(), self.job_owner)

    @hookimpl
    def parallelr_task_retry(self, run: RunInfo, result: TaskResult, delay: float) -> None:
        writer = self._writer_for(run)
        if writer is not None:
            self._put(writer, "attempt_ended", self.run_id, result, time.time(), delay)

    @hookimpl
    def parallelr_task_finish(self, run: RunInfo, result: TaskResult) -> None:
        writer = self._writer_for(run)
        if writer is None:
            return
        if result.worker_id == 0 and result.start_time is None and result.status is TaskStatus.CANCELLED:
            # Never got a slot (the run is stopping): a million of them after a Ctrl+C must not
            # cost a million records. Neighbours with the same message become one range.
            index, error = result.task.index, result.error_message
            gathered = self._not_started
            if gathered is not None and gathered[1] + 1 == index and gathered[2] == error:
                gathered[1] = index
            else:
                self._put_not_started(writer)
                self._not_started = [index, index, error, time.time()]
            if self.planner is not None:
                self.planner.halt()  # nothing more starts: the jobs not stored yet never will be
            return
        self._put(writer, "attempt_ended", self.run_id, result, time.time(), None)

    @hookimpl
    def parallelr_run_problems(self, run: RunInfo) -> Optional[List[str]]:
        """Wait (bounded) until every record is committed; one line if some could not be."""
        writer = self._writer_for(run)
        if writer is None:
            return None
        self._put_not_started(writer)
        timeout = flush_timeout()
        if not writer.flush(min(PATIENCE, timeout)) and timeout > PATIENCE:
            if writer.failure is not None:  # not just a big commit: say why the run does not end yet
                log.warning("journal %s: waiting up to %.0f s more to record the run's results (%s)",
                            writer.store.location, timeout - PATIENCE, writer.failure)
            writer.flush(timeout - PATIENCE)
        problem = writer.problem()
        self._failed = problem is not None
        return [problem] if problem else None

    @hookimpl
    def parallelr_run_finish(self, run: RunInfo, summary: RunSummary) -> None:
        writer = self._writer_for(run)
        if writer is None:
            return
        explicit = self.resuming is not None and self.resuming.job_ids is not None
        why = (f"stop limits reached ({summary.stop_reason})" if summary.stop_reason
               else f"run interrupted by {summary.interrupted_by}" if summary.interrupted_by else None)
        if why and not explicit:
            # The run stopped early: a job still pending now never started in it, although the
            # scheduler did not report it (a source that failed half-way cannot be read on).
            self._put(writer, NOT_STARTED, self.run_id, 1, ALL_POSITIONS, f"Not started: {why}", time.time())
        self._put(writer, "finish_run", self.run_id, summary, time.time())
        self.close()

    def close(self) -> None:
        """Commit what is queued (waiting for a busy database up to :func:`flush_timeout`), stop
        the writer, close the database. Safe to call twice."""
        writer, store = self.writer, self.store
        self.writer = self.store = None
        atexit.unregister(self.close)
        if writer is not None:
            self._put_not_started(writer)
            if not writer.close(AFTER_FAILURE_TIMEOUT if self._failed else flush_timeout()):
                # Still waiting for the database: the thread keeps the connection, and the run
                # shows as crashed (its results, if they were recorded, are kept).
                log.warning("journal %s: the end of run %s could not be recorded (%s)", writer.store.location,
                            self.run_id, writer.failure or "busy")
                return
            if writer.dropped_updates or writer.failure:
                self._failed = True
        if store is not None:
            store.close()


def _max_attempts(run: RunInfo) -> int:
    advanced = getattr(run.settings, "advanced", None)
    return 1 + int(getattr(advanced, "retries", 0) or 0)


def _terminate_leftovers(run_id: str) -> None:
    leftovers = processes.find_leftovers(run_id)
    if leftovers.processes:
        count = processes.terminate(leftovers)
        print(f"Terminated {len(leftovers.tasks)} leftover task(s) of run {run_id} ({count} process(es);"
              " its runner is gone)")
