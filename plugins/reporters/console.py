"""Console reporter: a line per task start and finish on stdout, and the summary block at the end.

The module only registers a :class:`ConsoleReporter` per run (``-p no:console`` blocks the module,
so nothing is registered); the object holds that run's state, so one process can run two batches.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Optional

from parallelr.console import ConsoleHandler, console_write, silence_stdout
from parallelr.hookspecs import hookimpl
from parallelr.model import RunInfo, RunSummary, Task, TaskResult
from parallelr.report import (
    LineLogger,
    LogLine,
    never_started,
    not_started_line,
    register_reporter,
    summary_lines,
    task_finished,
    task_retrying,
    task_started,
)

REPORTER_NAME = "console-reporter"


@hookimpl
def parallelr_configure(config: Any) -> None:
    register_reporter(config.pluginmanager, REPORTER_NAME, ConsoleReporter())


class ConsoleReporter:
    """The console lines of one run: ``[i/N]`` in front of the per-task lines of report.py.

    The hooks are ``trylast`` so that the reporters observe a run after the other plugins (the
    journal) have acted in the same hook, as when they were modules registered first; among the
    trylast reporters pluggy calls the earliest registered first, which keeps their old order.
    """

    def __init__(self) -> None:
        self._lines: Optional[LineLogger] = None
        self._not_started = 0  # tasks that never started: one line for all at the end
        self._not_started_reason = ""

    def _counter(self, run: RunInfo, task: Task) -> str:
        total = run.task_count if run.task_count is not None else "?"
        return f"[{task.index}/{total}]"

    def _log(self, run: RunInfo, task: Task, line: LogLine) -> None:
        level, message, args = line
        lines = self._lines
        if lines is not None and lines.enabled(level):  # the counter only for a line that is written
            lines.log(level, "%s " + message, self._counter(run, task), *args)

    @hookimpl(trylast=True)
    def parallelr_run_start(self, run: RunInfo) -> None:
        cfg = run.settings.logging
        self._lines = LineLogger("parallelr.console", ConsoleHandler(cfg.console_format),
                                 logging.getLevelName(cfg.level), fmt=cfg.console_format)

    @hookimpl(trylast=True)
    def parallelr_task_start(self, run: RunInfo, task: Task, worker_id: int) -> None:
        self._log(run, task, task_started(task, worker_id))

    @hookimpl(trylast=True)
    def parallelr_task_retry(self, run: RunInfo, result: TaskResult, delay: float) -> None:
        self._log(run, result.task, task_retrying(result, delay))

    @hookimpl(trylast=True)
    def parallelr_task_finish(self, run: RunInfo, result: TaskResult) -> None:
        if never_started(result):
            if not self._not_started:
                self._not_started_reason = result.error_message
            self._not_started += 1
            return
        self._log(run, result.task, task_finished(result, no_message="no details"))

    @hookimpl(trylast=True)
    def parallelr_run_finish(self, run: RunInfo, summary: RunSummary) -> None:
        if self._not_started and self._lines is not None:
            level, message, args = not_started_line(self._not_started, self._not_started_reason)
            self._lines.log(level, message, *args)
        text = "\n".join(summary_lines(run, summary))
        stream: Any = sys.stdout
        try:
            with console_write():  # below a status line (the progress line), if one is still shown
                stream.write("\n" + text + "\n")
                stream.flush()
        except (OSError, ValueError):  # the console went away or is full; the files keep the summary
            silence_stdout(stream)
        self._lines = None
