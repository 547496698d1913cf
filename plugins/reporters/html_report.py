"""HTML reporter: ``--html-report PATH`` writes one self-contained HTML page of the run (its
summary block, status counts, a sortable and filterable table of the tasks, the output tails of
the failed tasks and a per-slot timeline of every attempt); :mod:`parallelr.html_report` draws it.

Nothing of the run is held in memory: every attempt (a retried one from
``parallelr_task_retry``, the last one from ``parallelr_task_finish``) and every task's row go to
the report's spool, temporary files beside PATH, and the page is rendered from the spool at the
end of the run and renamed into place whole. The directory is checked before the first task
runs; a dry run writes nothing.
"""

from __future__ import annotations

import errno
import os
import time
from typing import TYPE_CHECKING, Any, Optional

from parallelr.hookspecs import hookimpl
from parallelr.model import RunInfo, RunSummary, TaskResult
from parallelr.paths import expand_user
from parallelr.report import register_reporter, summary_lines, write_error

if TYPE_CHECKING:
    from parallelr.html_report import Attempt, Output, RunFacts, Spool, TaskRow

# parallelr.html_report (the page, its timeline, Jinja2's template) is imported by the functions
# that draw a report, not here: every run registers this plugin, few ask for --html-report, and
# importing the page costs every run's start-up.

OPTION = "html_report"
REPORTER_NAME = "html-reporter"


@hookimpl
def parallelr_addoption(parser: Any) -> None:
    parser.getgroup("reports").add_argument(
        "--html-report", dest=OPTION, metavar="PATH",
        help="also write a self-contained HTML report of the run to PATH (summary, task table, "
             "output of failed tasks, timeline)",
    )


@hookimpl
def parallelr_configure(config: Any) -> None:
    path = config.request.option(OPTION)
    if path and config.request.execute:  # a dry run runs nothing: no report
        reporter = HtmlReporter(os.path.abspath(expand_user(path)))
        register_reporter(config.pluginmanager, REPORTER_NAME, reporter)


def attempt_of(result: TaskResult) -> Attempt:
    from parallelr.html_report import Attempt

    task = result.task
    return Attempt(position=task.index, task=task.source, attempt=result.attempt, status=result.status.value,
                   worker_id=result.worker_id, exit_code=result.exit_code, started_at=result.start_time,
                   ended_at=result.end_time)


def row_of(result: TaskResult) -> TaskRow:
    from parallelr.html_report import TaskRow

    task = result.task
    started = result.start_time is not None
    return TaskRow(
        position=task.index, task=task.source, arguments=task.arguments, status=result.status.value,
        # a task stopped before its next attempt started ran one attempt fewer than its number
        attempts=result.attempt if started else result.attempt - 1,
        worker_id=result.worker_id or None, exit_code=result.exit_code, started_at=result.start_time,
        duration=result.duration if started else None, memory_mb=result.memory_mb if started else None,
        cpu_percent=result.cpu_percent if started else None, error=result.error_message,
    )


def output_of(result: TaskResult) -> Output:
    from parallelr.html_report import Output

    task = result.task
    return Output(position=task.index, task=task.source, arguments=task.arguments, status=result.status.value,
                  attempts=result.attempt, exit_code=result.exit_code, error=result.error_message,
                  stdout=result.stdout, stderr=result.stderr)


def facts_of(run: RunInfo) -> RunFacts:
    from parallelr.html_report import RunFacts

    capture = run.settings.limits.max_output_capture
    return RunFacts(
        title=f"{run.app_name} run {run.run_id or run.timestamp}", command=run.command_template,
        started_at=run.started_at, ended_at=time.time(), origin=f"this run (PID {run.pid})",
        output_log=run.paths.output_log,
        notes=(f"Output tails: the last {capture} characters of each stream (limits.max_output_capture).",),
    )


class HtmlReporter:
    """The HTML report of one run, at ``path``."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._spool: Optional[Spool] = None

    @hookimpl(trylast=True)
    def parallelr_run_start(self, run: RunInfo) -> None:
        from parallelr.html_report import WHAT, Spool

        # before the first task: named as the user gave it, not as the spool or the part file
        for wrong, code in ((not os.path.isdir(os.path.dirname(self.path)), errno.ENOENT),
                            (os.path.isdir(self.path), errno.EISDIR)):
            if wrong:
                raise write_error(WHAT, self.path, OSError(code, os.strerror(code)))
        self._spool = Spool(self.path)

    @hookimpl(trylast=True)
    def parallelr_task_retry(self, run: RunInfo, result: TaskResult, delay: float) -> None:
        if self._spool is not None:
            self._spool.add(attempt_of(result))

    @hookimpl(trylast=True)
    def parallelr_task_finish(self, run: RunInfo, result: TaskResult) -> None:
        spool = self._spool
        if spool is None:
            return
        if result.start_time is not None:  # a task that never started has no bar
            spool.add(attempt_of(result))
        spool.add(row_of(result))
        if result.status.is_failure and spool.wants_output():
            spool.add(output_of(result))

    @hookimpl(trylast=True)
    def parallelr_run_finish(self, run: RunInfo, summary: RunSummary) -> None:
        spool, self._spool = self._spool, None
        if spool is not None and not spool.closed:  # closed: a write failed, and said so
            from parallelr.html_report import render

            render(self.path, facts_of(run), summary_lines(run, summary), spool)
