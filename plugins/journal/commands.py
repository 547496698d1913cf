"""``parallelr runs list|show`` and ``parallelr dlq list|retry``: the journal from the command line.

The journal plugin (:mod:`.plugin`) names these commands; this module, with the HTML report it can
write, is imported only when one of them runs."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
import time
from typing import IO, Any, Dict, Iterator, List, Optional

from parallelr.errors import ParallelrError, UsageError
from parallelr.html_report import FAILURES, Attempt, Output, RunFacts, Spool, TaskRow, render
from parallelr.jobs.liveness import shown_state
from parallelr.jobs.records import JobRecord, RunRecord
from parallelr.jobs.run_views import job_dict as _job_dict
from parallelr.jobs.run_views import run_counts as _counts
from parallelr.jobs.run_views import run_dict as _run_dict
from parallelr.jobs.run_views import unstored_are_waiting
from parallelr.jobs.states import JOB_STATES
from parallelr.jobs.store import JobStore
from parallelr.paths import expand_user
from parallelr.paths import store_location as journal_location
from parallelr.plugins.journal.database import JournalUnavailable, open_journal, reading_journal
from parallelr.plugins.journal.resume import LAST, ONLY_DEAD, check_not_running, is_unset
from parallelr.request import RunRequest
from parallelr.tables import local_time, shorten, write_table

ERROR_WIDTH = 60  # characters of a task's last error in a table (JSON has all of it)


# -- shared -------------------------------------------------------------------------------------
def _open(config: Any) -> Optional[JobStore]:
    """The journal, or None if no run was ever recorded (reading never creates it)."""
    try:
        return open_journal(journal_location(config.settings, config.home), create=False)
    except JournalUnavailable as exc:
        raise exc.without_hint() from None


def _path(config: Any) -> str:
    return str(journal_location(config.settings, config.home))


def _find_run(store: Optional[JobStore], wanted: str, config: Any) -> RunRecord:
    run = None
    if store is not None:
        run = store.latest_run() if wanted == LAST else store.get_run(wanted)
    if run is None:
        what = "no run is recorded yet" if wanted == LAST else f"unknown run {wanted!r}"
        raise UsageError(f"{what} (journal {_path(config)}); see '{config.app_name} runs list'")
    return run


def _write_json_lines(out: IO[str], head: str, items: Iterator[Dict[str, Any]], tail: str) -> None:
    """A JSON document whose list is written item by item (a run may have 100,000 tasks)."""
    out.write(head)
    for number, item in enumerate(items):
        out.write(("" if number == 0 else ",") + "\n  " + json.dumps(item, sort_keys=True))
    out.write("\n" + tail + "\n")


# -- runs ---------------------------------------------------------------------------------------
def _add_runs_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="recorded runs, newest first")
    listing.add_argument("--limit", type=int, default=20, metavar="N", help="show N runs (0: all; 20)")
    listing.add_argument("--json", action="store_true", help="JSON instead of a table")
    show = actions.add_parser("show", help="one run: its options and the state of every task")
    show.add_argument("run_id", metavar="RUN_ID|last", help="a run ID from 'runs list', or last")
    show.add_argument("--state", choices=JOB_STATES, action="append", metavar="STATE",
                      help=f"only tasks in this state ({', '.join(JOB_STATES)}); repeatable")
    shown_as = show.add_mutually_exclusive_group()
    shown_as.add_argument("--json", action="store_true", help="JSON instead of text")
    shown_as.add_argument("--html", metavar="PATH",
                          help="write the run's HTML report to PATH instead (as --html-report would have)")


def _runs(config: Any, out: IO[str] = sys.stdout) -> int:
    options = config.options
    store = _open(config)
    try:
        with _reading(store):
            if options.action == "list":
                return _runs_list(store, options, config, out)
            return _runs_show(store, options, config, out)
    finally:
        if store is not None:
            store.close()


def _reading(store: Optional[JobStore]) -> Any:
    """A store error while reading (a corrupt page) is one line naming the journal."""
    return reading_journal(store) if store is not None else contextlib.nullcontext()


def _runs_list(store: Optional[JobStore], options: Any, config: Any, out: IO[str]) -> int:
    if options.limit < 0:
        raise UsageError("--limit takes a number of runs, 0 for all")
    runs = store.list_runs(options.limit or None) if store is not None else []
    if options.json:
        data = [_run_dict(store, run) for run in runs] if store is not None else []
        out.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
        return 0
    if store is None or not runs:
        out.write(f"No runs recorded yet (journal: {_path(config)})\n")
        return 0
    rows = []
    for run in runs:
        counts = _counts(store, run)
        rows.append((
            run.id, local_time(run.started_at), local_time(run.ended_at), shown_state(run), counts["tasks"],
            counts["succeeded"], counts["failed"], counts["cancelled"], counts["pending"], run.command,
        ))
    write_table(out, ("RUN ID", "STARTED", "ENDED", "STATE", "TASKS", "SUCCEEDED", "FAILED", "CANCELLED",
                      "PENDING", "COMMAND"), rows)
    return 0


def _runs_show(store: Optional[JobStore], options: Any, config: Any, out: IO[str]) -> int:
    if options.html and options.state:
        raise UsageError("--html reports every task of the run; it takes no --state")
    run = _find_run(store, options.run_id, config)
    assert store is not None
    if options.html:
        path = os.path.abspath(expand_user(options.html))
        _write_html(store, run, path)
        out.write(f"HTML report: {path}\n")
        return 0
    jobs = store.iter_jobs(run.id, states=options.state)
    if options.json:
        about = {"run": _run_dict(store, run), "options": dict(run.options)}
        head = json.dumps(about, indent=2, sort_keys=True)
        _write_json_lines(out, head[:-2] + ',\n  "tasks": [', (_job_dict(job) for job in jobs), "]}")
        return 0
    out.write("\n".join(_run_lines(store, run)) + "\n\n")
    rows = (
        (job.position, job.id, job.state, job.attempts, job.exit_code, shorten(job.last_error, ERROR_WIDTH),
         job.label)
        for job in jobs
    )
    count = write_table(out, ("POS", "JOB", "STATE", "ATTEMPTS", "EXIT", "LAST ERROR", "TASK"), rows)
    if count == 0 and not run.unrecorded:
        out.write("(no tasks)\n")
    if run.unrecorded and not options.state:
        first = (run.planned or 0) + 1
        out.write(f"(tasks {first}-{first + run.unrecorded - 1}: never started, not stored one by one)\n")
    return 0


def _run_lines(store: JobStore, run: RunRecord) -> List[str]:
    """The facts ``runs show`` prints above the tasks (the HTML report's summary block too)."""
    counts = _counts(store, run)
    lines = [
        f"Run ID:     {run.id}",
        f"State:      {shown_state(run)}",
        f"App:        {run.app_name}",
        f"Started:    {local_time(run.started_at)}",
        f"Ended:      {local_time(run.ended_at)}",
        f"Runner:     PID {run.pid} on {run.host}",
        f"Command:    {run.command}",
        f"Exit code:  {'-' if run.exit_code is None else run.exit_code}",
        f"Resumed:    {run.resumes} time(s)",
        "Tasks:      {tasks} (succeeded {succeeded}, failed {failed}, cancelled {cancelled}, "
        "pending {pending})".format(**counts),
        f"Main log:   {run.main_log or '-'}",
        f"Summary:    {run.summary_csv or '-'}",
        f"Output:     {run.output_log or '-'}",
        "Options:",
    ]
    for name in sorted(run.options):
        value = run.options[name]
        if not is_unset(value):
            lines.append(f"  {name}: {json.dumps(value) if isinstance(value, (list, dict)) else value}")
    return lines


# What a run's page lacks when it comes from the journal: the store keeps no output, and its
# attempts (AttemptRecord) carry no memory or CPU figures.
JOURNAL_NOTES = (
    "From the journal: it keeps no task output, so the failed tasks below show their error only;"
    " memory and CPU figures are not read from it.",
)


def _write_html(store: JobStore, run: RunRecord, path: str) -> None:
    """The HTML report of a recorded run, as ``--html-report`` writes it for a live one: the bars
    from the run's attempts, the rows from its jobs (by position), each with the slot of its
    last attempt (the one map kept in memory: a number per task)."""
    now = time.time()
    spool = Spool(path)
    try:
        slots: Dict[int, Optional[int]] = {}
        for position, source, attempt in store.run_attempts(run.id):  # by start time: the last one wins
            spool.add(Attempt(position=position, task=source, attempt=attempt.attempt, status=attempt.status,
                              worker_id=attempt.worker_id, exit_code=attempt.exit_code,
                              started_at=attempt.started_at, ended_at=attempt.ended_at))
            slots[position] = attempt.worker_id
        for job in store.iter_jobs(run.id):
            spool.add(_task_row(job, slots.get(job.position or 0)))
            if job.last_status in FAILURES and job.state.value not in ("pending", "running"):
                spool.add(Output(position=job.position or 0, task=job.source, arguments=job.arguments,
                                 status=job.last_status, attempts=job.attempts, exit_code=job.exit_code,
                                 error=job.last_error or "", stdout=None, stderr=None))
        notes = list(JOURNAL_NOTES)
        extra: Dict[str, int] = {}
        if run.unrecorded:
            first = (run.planned or 0) + 1
            notes.append(f"Tasks {first}-{first + run.unrecorded - 1} never started and are not stored one"
                         " by one: they are counted, not listed.")
            extra["PENDING" if unstored_are_waiting(run) else "CANCELLED"] = run.unrecorded
        facts = RunFacts(
            title=f"{run.app_name} run {run.id}", command=run.command or "", started_at=run.started_at,
            ended_at=run.ended_at, origin=f"the journal {store.location} ({shown_state(run)})",
            output_log=run.output_log, notes=tuple(notes), generated_at=now,
        )
        render(path, facts, _run_lines(store, run), spool, extra)
    finally:
        spool.close()


def _task_row(job: JobRecord, slot: Optional[int]) -> TaskRow:
    state = job.state.value
    # a job waiting or running has not ended: its state says more than its last attempt's status
    status = state.upper() if state in ("pending", "running") or not job.last_status else job.last_status
    return TaskRow(position=job.position or 0, task=job.source, arguments=job.arguments, status=status,
                   attempts=job.attempts, worker_id=slot, exit_code=job.exit_code, started_at=job.started_at,
                   duration=job.duration, memory_mb=None, cpu_percent=None, error=job.last_error or "")


# -- dlq ----------------------------------------------------------------------------------------
def _add_dlq_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="dead tasks: their last attempt failed")
    listing.add_argument("--run", metavar="RUN_ID", help="only tasks of this run")
    listing.add_argument("--json", action="store_true", help="JSON instead of a table")
    retry = actions.add_parser("retry", help="run dead tasks again now, as a new attempt")
    retry.add_argument("ids", nargs="*", type=int, metavar="JOB_ID", help="job IDs from 'dlq list'")
    retry.add_argument("--all", action="store_true", help="every dead task (of --run, if given)")
    retry.add_argument("--run", metavar="RUN_ID", help="only tasks of this run")


def _dlq(config: Any, out: IO[str] = sys.stdout) -> int:
    options = config.options
    store = _open(config)
    try:
        with _reading(store):
            if options.run:
                options.run = _find_run(store, options.run, config).id
            if options.action == "list":
                return _dlq_list(store, options, out)
            return _dlq_retry(store, options, config, out)
    finally:
        if store is not None:
            store.close()


def _dlq_list(store: Optional[JobStore], options: Any, out: IO[str]) -> int:
    jobs = store.dead_jobs(options.run) if store is not None else iter(())
    if options.json:
        _write_json_lines(out, "[", (_job_dict(job) for job in jobs), "]")
        return 0
    rows = (
        (job.id, job.run_id or "-", job.attempts, job.last_status, shorten(job.last_error, ERROR_WIDTH),
         job.label)
        for job in jobs
    )
    first = next(rows, None)
    if first is None:
        out.write(f"No dead tasks{' in run ' + options.run if options.run else ''}.\n")
        return 0
    write_table(out, ("JOB", "RUN", "ATTEMPTS", "STATUS", "LAST ERROR", "TASK"), _prepend(first, rows))
    return 0


def _prepend(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest


def _selected_dead(store: Optional[JobStore], options: Any, config: Any) -> List[JobRecord]:
    if options.all and options.ids:
        raise UsageError("dlq retry takes job IDs or --all, not both")
    if not options.all and not options.ids:
        raise UsageError(f"dlq retry needs job IDs or --all (see '{config.app_name} dlq list')")
    if store is None:
        if options.all:
            return []
        raise UsageError(f"no task with job ID {options.ids[0]} (journal {_path(config)} is empty)")
    if options.all:
        return list(store.dead_jobs(options.run))
    found = {job.id: job for job in store.jobs_by_ids(options.ids)}
    for job_id in options.ids:
        job = found.get(job_id)
        if job is None:
            raise UsageError(f"no task with job ID {job_id}; see '{config.app_name} dlq list'")
        if job.state != "dead":
            raise UsageError(
                f"job {job_id} is not a dead task (it is {job.state}); see '{config.app_name} dlq list'"
            )
        if options.run and job.run_id != options.run:
            raise UsageError(f"job {job_id} is not a task of run {options.run}")
        if job.run_id is None:
            raise UsageError(f"job {job_id} belongs to a queue, not a run; a queue worker retries it")
    return sorted(found.values(), key=lambda job: job.id)


def retry_dead(config: Any, run_id: str, only: str) -> None:
    """Run the dead jobs ``only`` of ``run_id`` again: a resume of that run, in this process."""
    from parallelr.api import run_batch  # the engine, imported only when something is retried

    request = RunRequest(execute=True, plugin_options={"resume": run_id, "resume_only": only})
    try:
        run_batch(request, app_name=config.app_name, preset=getattr(config, "preset", None),
                  handle_signals=threading.current_thread() is threading.main_thread())
    except ParallelrError as exc:  # this run could not be retried; the others still are
        sys.stdout.flush()
        print(f"{config.app_name}: error: {exc}", file=sys.stderr)


def _dlq_retry(store: Optional[JobStore], options: Any, config: Any, out: IO[str]) -> int:
    jobs = _selected_dead(store, options, config)
    if not jobs:
        out.write(f"No dead tasks{' in run ' + options.run if options.run else ''} to retry.\n")
        return 0
    assert store is not None
    by_run: Dict[str, List[int]] = {}
    for job in jobs:
        by_run.setdefault(job.run_id or "", []).append(job.id)
    for run_id in by_run:
        run = store.get_run(run_id)
        if run is not None:
            check_not_running(run)
    store.close()  # the retry runs write to it
    for run_id, ids in by_run.items():
        only = ONLY_DEAD if options.all else ",".join(str(job_id) for job_id in ids)
        out.write(f"Retrying {len(ids)} dead task(s) of run {run_id}\n")
        out.flush()
        retry_dead(config, run_id, only)
    try:
        after = open_journal(store.address, create=False)
    except JournalUnavailable as exc:
        raise exc.without_hint() from None
    if after is None:
        return 1
    try:
        with reading_journal(after):
            states = {job.id: job.state for job in after.jobs_by_ids([job.id for job in jobs])}
    finally:
        after.close()
    succeeded = sum(1 for state in states.values() if state == "succeeded")
    failed = len(jobs) - succeeded
    out.write(f"dlq retry: {succeeded} of {len(jobs)} task(s) succeeded, {failed} did not\n")
    return 0 if failed == 0 else 1

