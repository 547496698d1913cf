"""The journal plugin: records every real run in SQLite so it can be resumed, retried and inspected.

* ``--no-journal`` (or ``journal.enabled: false``): the database is never opened or created.
* ``--resume RUN_ID|last``: run again what did not succeed (``-r``), or list it (dry run).
* ``parallelr runs list|show`` and ``parallelr dlq list|retry``: see :mod:`.commands`.

The run and its tasks are stored before the first task starts (``parallelr_run_planned``, on the
main thread, so a database that cannot be used stops the run with one line before anything
runs). After that the task hooks only queue records for the writer thread (:mod:`.writer`).
"""

from __future__ import annotations

import argparse
import atexit
import logging
import time
from pathlib import Path
from typing import Any, Dict, Optional

from parallelr.config import load_settings
from parallelr.errors import UsageError
from parallelr.hookspecs import hookimpl
from parallelr.model import ResumePlan, RunInfo, RunSummary, Task, TaskResult
from parallelr.plugins.journal import processes
from parallelr.plugins.journal.commands import COMMANDS
from parallelr.plugins.journal.resume import (
    TASK_OPTIONS,
    Selection,
    build_plan,
    check_not_running,
    find_run,
    is_unset,
    parse_only,
    restore_options,
)
from parallelr.plugins.journal.store import JournalStore, JournalUnavailable, journal_path
from parallelr.plugins.journal.writer import JournalWriter

log = logging.getLogger("parallelr.journal")

# Why the unfinished attempt of a task found "running" in a resumed run ended.
RUNNER_DIED = "the runner of this run died while the task ran; run again by --resume"


class _Active:
    """The journal of the run in progress in this process (one run at a time)."""

    def __init__(self) -> None:
        self.store: Optional[JournalStore] = None
        self.writer: Optional[JournalWriter] = None
        self.run_id: str = ""
        self.owner: str = ""
        # Set by parallelr_resume, used by parallelr_run_planned: (run ID, explicit job IDs).
        self.resuming: Optional[Dict[str, Any]] = None

    def start(self, store: JournalStore, run: RunInfo) -> None:
        self.store = store
        self.writer = JournalWriter(store)
        self.run_id = run.run_id or ""
        self.owner = f"pid:{run.pid}"

    def stop(self) -> None:
        """Commit what is queued, stop the writer, close the database."""
        writer, store = self.writer, self.store
        self.writer = self.store = None
        self.resuming = None
        if writer is not None:
            writer.close()
        if store is not None:
            store.close()


_active = _Active()
# A run that ends without parallelr_run_finish (an exception in the core) still commits its records.
atexit.register(_active.stop)


def journal_enabled(run: RunInfo) -> bool:
    """Off with --no-journal or ``journal.enabled: false``."""
    return not run.options.get("no_journal") and bool(run.settings.journal.enabled)


# -- command line -----------------------------------------------------------------------------
@hookimpl
def parallelr_commands() -> Dict[str, Any]:
    return dict(COMMANDS)


@hookimpl
def parallelr_addoption(parser: Any) -> None:
    group = parser.getgroup("journal (resume, dead letters)")
    group.add_argument(
        "--no-journal", action="store_true",
        help="do not record this run in the journal (~/<app>/state.db); it cannot be resumed",
    )
    group.add_argument(
        "--resume", metavar="RUN_ID|last",
        help="run again the tasks of a recorded run that did not succeed (with -r; without: list them)",
    )
    # Used by 'parallelr dlq retry': only these job IDs (or 'dead': every dead job) of the run.
    group.add_argument("--resume-only", metavar="IDS", help=argparse.SUPPRESS)


@hookimpl(tryfirst=True)  # before a preset fills in its default command: the stored one wins
def parallelr_configure(config: Any) -> None:
    options = config.options
    only = parse_only(getattr(options, "resume_only", None))
    if not getattr(options, "resume", None):
        if only is not None:
            raise UsageError("--resume-only needs --resume RUN_ID")
        return
    if getattr(options, "no_journal", False):
        raise UsageError("--resume reads the journal: it cannot be combined with --no-journal")
    given = [flag for name, flag in TASK_OPTIONS if not is_unset(getattr(options, name, None))]
    if given:
        raise UsageError(f"--resume runs the tasks stored for the run; drop {', '.join(given)}")
    # The core reads the YAML files only after this hook; the journal's place is needed now.
    settings = load_settings(config.app_name).settings
    if not settings.journal.enabled:
        raise UsageError("--resume needs the journal, but journal.enabled is false in the config")
    path = journal_path(settings, config.home)
    store = _open_for_resume(path)
    if store is None:
        raise UsageError(f"--resume: no run has been recorded yet (no journal at {path})")
    try:
        run = find_run(store, options.resume, config.app_name)
    finally:
        store.close()
    check_not_running(run)
    options.resume = run.id  # "last" resolved once: the plan and the run use the same run
    restore_options(options, dict(run.options))


# -- resume -----------------------------------------------------------------------------------
def _open_for_resume(path: Path) -> Optional[JournalStore]:
    try:
        return JournalStore.open(path, create=False)
    except JournalUnavailable as exc:  # --no-journal is no way out here
        raise exc.without_hint() from None


@hookimpl
def parallelr_resume(config: Any) -> Optional[ResumePlan]:
    options = config.options
    run_id = getattr(options, "resume", None)
    if not run_id:
        return None
    only = parse_only(getattr(options, "resume_only", None))
    path = journal_path(config.settings, config.home)
    store = _open_for_resume(path)
    if store is None:
        raise UsageError(f"--resume: the journal {path} is gone")
    try:
        run = store.get_run(run_id)
        if run is None:
            raise UsageError(f"unknown run {run_id!r} in {store.path}")
        check_not_running(run)
        if options.run:  # a dry run changes nothing, not even a dead run's leftover processes
            _terminate_leftovers(run_id)
        mode, ids = only if only is not None else ("unfinished", ())
        plan, chosen = build_plan(store, Selection(run_id, mode, ids))
    finally:
        store.close()
    _active.resuming = {"run_id": run_id, "job_ids": chosen}
    return plan


def _terminate_leftovers(run_id: str) -> None:
    leftovers = processes.find_leftovers(run_id)
    if leftovers.processes:
        count = processes.terminate(leftovers)
        print(f"Terminated {len(leftovers.tasks)} leftover task(s) of run {run_id} ({count} process(es);"
              " its runner is gone)")


# -- the run ----------------------------------------------------------------------------------
@hookimpl
def parallelr_run_planned(run: RunInfo, tasks: Any) -> None:
    resuming = _active.resuming if run.resumed else None
    _active.stop()  # an earlier run in this process that did not finish cleanly
    if not journal_enabled(run) or not run.run_id:
        return
    store = JournalStore.open(journal_path(run.settings, Path(run.paths.home)))
    assert store is not None
    now = time.time()
    try:
        with store.guarded():
            create_time, host = processes.own_create_time(), processes.this_host()
            if resuming is not None and resuming["run_id"] == run.run_id and store.get_run(run.run_id):
                store.reopen_run(run, create_time, host)
                store.requeue(run.run_id, resuming["job_ids"], now, RUNNER_DIED)
            else:
                store.insert_run(run, create_time, host)
                store.insert_jobs(run.run_id, tasks, _max_attempts(run), now)
    except BaseException:
        store.close()
        raise
    _active.start(store, run)


def _max_attempts(run: RunInfo) -> int:
    advanced = getattr(run.settings, "advanced", None)
    return 1 + int(getattr(advanced, "retries", 0) or 0)


@hookimpl
def parallelr_task_start(run: RunInfo, task: Task, worker_id: int) -> None:
    writer = _active.writer
    if writer is not None:
        writer.put("task_started", _active.run_id, task, worker_id, time.time(), _active.owner)


@hookimpl
def parallelr_task_retry(run: RunInfo, result: TaskResult, delay: float) -> None:
    writer = _active.writer
    if writer is not None:
        writer.put("attempt_ended", _active.run_id, result, time.time(), delay)


@hookimpl
def parallelr_task_finish(run: RunInfo, result: TaskResult) -> None:
    writer = _active.writer
    if writer is not None:
        writer.put("attempt_ended", _active.run_id, result, time.time(), None)


@hookimpl
def parallelr_run_finish(run: RunInfo, summary: RunSummary) -> None:
    writer = _active.writer
    if writer is None:
        return
    writer.put("finish_run", _active.run_id, summary, time.time())
    _active.stop()

