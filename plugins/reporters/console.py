"""Console reporter: a line per task start and finish on stdout, and the summary block at the end."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, Optional

from parallelr.console import ConsoleHandler
from parallelr.hookspecs import hookimpl
from parallelr.model import RunInfo, RunSummary, Task, TaskResult, TaskStatus
from parallelr.report import LineLogger, summary_lines, task_label

_lines: Optional[LineLogger] = None


def _counter(run: RunInfo, task: Task) -> str:
    total = run.task_count if run.task_count is not None else "?"
    return f"[{task.index}/{total}]"


@hookimpl
def parallelr_run_start(run: RunInfo) -> None:
    global _lines
    handler = ConsoleHandler(run.settings.logging.console_format)
    _lines = LineLogger("parallelr.console", handler, logging.getLevelName(run.settings.logging.level))


@hookimpl
def parallelr_task_start(run: RunInfo, task: Task, worker_id: int) -> None:
    if _lines is not None and _lines.enabled(logging.INFO):
        again = f" (attempt {task.attempt})" if task.attempt > 1 else ""
        _lines.log(logging.INFO, "%s Worker %d: Starting task %s%s", _counter(run, task), worker_id,
                   task_label(task), again)


@hookimpl
def parallelr_task_retry(run: RunInfo, result: TaskResult, delay: float) -> None:
    if _lines is not None:
        _lines.log(
            logging.WARNING, "%s Task %s (attempt %d): %s: %s; retrying in %gs", _counter(run, result.task),
            result.status.value, result.attempt, task_label(result.task), result.error_message, delay,
        )


@hookimpl
def parallelr_task_finish(run: RunInfo, result: TaskResult) -> None:
    if _lines is None:
        return
    if result.status is TaskStatus.SUCCESS:
        if _lines.enabled(logging.INFO):
            _lines.log(logging.INFO, "%s Task completed: %s (%.2fs)", _counter(run, result.task),
                       task_label(result.task), result.duration)
        return
    _lines.log(logging.WARNING, "%s Task %s: %s: %s", _counter(run, result.task), result.status.value,
               task_label(result.task), result.error_message or "no details")


@hookimpl
def parallelr_run_finish(run: RunInfo, summary: RunSummary) -> None:
    global _lines
    text = "\n".join(summary_lines(run, summary))
    stream: Any = sys.stdout
    try:
        stream.write("\n" + text + "\n")
        stream.flush()
    except (BrokenPipeError, ValueError):  # the console went away; the files keep the summary
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    _lines = None
