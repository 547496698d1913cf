"""The journal of one run: a plugin object registered per run, holding that run's store and writer.

:func:`parallelr.plugins.journal.plugin.parallelr_configure` registers a fresh
:class:`JournalRun` on the run's plugin manager (the way pytest registers its TerminalReporter),
so no module global holds the state of a run and two runs in one process never share a
journal. The object answers for its own config only (``parallelr_resume``) and, once a run is
planned, for that run only (its ID), whatever else the manager sees.

The run and its tasks are stored before the first task starts (``parallelr_run_planned``, on the
main thread, so a database that cannot be used stops the run with one line before anything
runs). After that the task hooks only queue records for the writer thread (:mod:`.writer`),
which also renews the run's lease.
"""

from __future__ import annotations

import atexit
import time
from pathlib import Path
from typing import Any, Optional, Tuple

import attrs

from parallelr.errors import UsageError
from parallelr.hookspecs import hookimpl
from parallelr.jobs.leases import Lease, new_owner
from parallelr.jobs.liveness import own_create_time, this_host
from parallelr.jobs.sqlite import SQLiteJobStore
from parallelr.model import ResumePlan, RunInfo, RunSummary, Task, TaskResult
from parallelr.paths import store_path as journal_path
from parallelr.plugins.journal import processes
from parallelr.plugins.journal.database import (
    JournalUnavailable,
    journal_transaction,
    open_journal,
)
from parallelr.plugins.journal.resume import Selection, build_plan, check_not_running, parse_only
from parallelr.plugins.journal.writer import JournalWriter, Renewal

# Why the unfinished attempt of a task found "running" in a resumed run ended.
RUNNER_DIED = "the runner of this run died while the task ran; run again by --resume"


def journal_enabled(run: RunInfo) -> bool:
    """Off with --no-journal or ``journal.enabled: false``."""
    return not run.options.get("no_journal") and bool(run.settings.journal.enabled)


def open_for_resume(path: Path) -> Optional[SQLiteJobStore]:
    try:
        return open_journal(path, create=False)
    except JournalUnavailable as exc:  # --no-journal is no way out here
        raise exc.without_hint() from None


@attrs.frozen
class Resuming:
    """What ``parallelr_resume`` planned, for ``parallelr_run_planned``: the run, the explicit job
    IDs (None: every job not succeeded) and the lease owner it judged gone."""

    run_id: str
    job_ids: Optional[Tuple[int, ...]]
    previous_owner: Optional[str]


class JournalRun:
    """The journal of the run of ``config``: its store, its writer, its lease."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.run_id: Optional[str] = None  # the run this object records, once planned
        self.resuming: Optional[Resuming] = None
        self.store: Optional[SQLiteJobStore] = None
        self.writer: Optional[JournalWriter] = None
        self.job_owner = ""  # the jobs' lease owner, as before leases: pid:<runner pid>

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
        path = journal_path(config.settings, config.home)
        store = open_for_resume(path)
        if store is None:
            raise UsageError(f"--resume: the journal {path} is gone")
        try:
            run = store.get_run(run_id)
            if run is None:
                raise UsageError(f"unknown run {run_id!r} in {store.path}")
            check_not_running(run)
            if request.execute:  # a dry run changes nothing, not even a dead run's leftover processes
                _terminate_leftovers(run_id)
            mode, ids = only if only is not None else ("unfinished", ())
            plan, chosen = build_plan(store, Selection(run_id, mode, ids))
        finally:
            store.close()
        self.resuming = Resuming(run_id, None if chosen is None else tuple(chosen), run.lease_owner)
        return plan

    # -- the run --------------------------------------------------------------------------------
    @hookimpl
    def parallelr_run_planned(self, run: RunInfo, tasks: Any) -> None:
        if self.run_id is not None or not run.run_id:
            return  # this object records one run
        self.run_id = run.run_id
        if not journal_enabled(run):
            return
        store = open_journal(journal_path(run.settings, Path(run.paths.home)))
        assert store is not None
        now = time.time()
        lease = Lease.starting(new_owner("runner", run.pid, this_host()), now)
        resuming = self.resuming if run.resumed and self.resuming is not None else None
        try:
            with journal_transaction(store):
                self._store_run(store, run, tasks, lease, resuming, now)
        except BaseException:
            store.close()
            raise
        self.store = store
        self.job_owner = f"pid:{run.pid}"
        self.writer = JournalWriter(store, Renewal(run.run_id, lease.owner))
        # A run that ends without parallelr_run_finish (an exception in the core, sys.exit)
        # still commits what it queued: the writer is a daemon thread, so drain it at exit.
        atexit.register(self.close)

    @staticmethod
    def _store_run(store: SQLiteJobStore, run: RunInfo, tasks: Any, lease: Lease,
                   resuming: Optional[Resuming], now: float) -> None:
        create_time, host = own_create_time(), this_host()
        assert run.run_id is not None
        if resuming is not None and resuming.run_id == run.run_id and store.get_run(run.run_id):
            if not store.reopen_run(run, create_time, host, lease, resuming.previous_owner, now):
                current = store.get_run(run.run_id)
                if current is not None:
                    check_not_running(current)  # a second resume got there first
                raise UsageError(f"run {run.run_id} was taken over by another process meanwhile")
            store.requeue(run.run_id, resuming.job_ids, now, RUNNER_DIED)
        else:
            store.insert_run(run, create_time, host, lease)
            store.insert_jobs(run.run_id, tasks, _max_attempts(run), now)

    def _writer_for(self, run: RunInfo) -> Optional[JournalWriter]:
        """This run's writer, or None for another run (or no journal)."""
        return self.writer if run.run_id == self.run_id else None

    @hookimpl
    def parallelr_task_start(self, run: RunInfo, task: Task, worker_id: int) -> None:
        writer = self._writer_for(run)
        if writer is not None:
            writer.put("task_started", self.run_id, task, worker_id, time.time(), self.job_owner)

    @hookimpl
    def parallelr_task_retry(self, run: RunInfo, result: TaskResult, delay: float) -> None:
        writer = self._writer_for(run)
        if writer is not None:
            writer.put("attempt_ended", self.run_id, result, time.time(), delay)

    @hookimpl
    def parallelr_task_finish(self, run: RunInfo, result: TaskResult) -> None:
        writer = self._writer_for(run)
        if writer is not None:
            writer.put("attempt_ended", self.run_id, result, time.time(), None)

    @hookimpl
    def parallelr_run_finish(self, run: RunInfo, summary: RunSummary) -> None:
        writer = self._writer_for(run)
        if writer is None:
            return
        writer.put("finish_run", self.run_id, summary, time.time())
        self.close()

    def close(self) -> None:
        """Commit what is queued, stop the writer, close the database. Safe to call twice."""
        writer, store = self.writer, self.store
        self.writer = self.store = None
        if writer is not None:
            writer.close()
        if store is not None:
            store.close()
        atexit.unregister(self.close)


def _max_attempts(run: RunInfo) -> int:
    advanced = getattr(run.settings, "advanced", None)
    return 1 + int(getattr(advanced, "retries", 0) or 0)


def _terminate_leftovers(run_id: str) -> None:
    leftovers = processes.find_leftovers(run_id)
    if leftovers.processes:
        count = processes.terminate(leftovers)
        print(f"Terminated {len(leftovers.tasks)} leftover task(s) of run {run_id} ({count} process(es);"
              " its runner is gone)")
