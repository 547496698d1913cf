"""Main log reporter: the rotating ``parallelr_{PID}_{TIMESTAMP}.log`` of the spec.

It also receives every message of the core and plugins (the ``parallelr`` logger), so warnings
and errors of a daemon run end up in a file someone can read.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
from typing import Optional

from parallelr.hookspecs import hookimpl
from parallelr.model import RunInfo, RunSummary, Task, TaskResult, TaskStatus
from parallelr.report import LineLogger, summary_lines, task_label

_handler: Optional[logging.Handler] = None
_task_log: Optional[LineLogger] = None  # task lines go to the file only, not to the stderr handler


class _CountingRotatingHandler(logging.handlers.RotatingFileHandler):
    """RotatingFileHandler that counts what it writes instead of asking the file system.

    The stdlib handler stats the file, seeks to its end and formats each record twice to decide
    whether to roll over: several system calls per log line, on the scheduler's thread. This
    log has one writer (this run), so a count is exact enough (characters, not bytes: the file
    rolls over at about max_log_size_mb).
    """

    def __init__(self, filename: str, max_bytes: int, backup_count: int) -> None:
        super().__init__(
            filename, maxBytes=max_bytes, backupCount=backup_count, encoding="utf-8",
            errors="backslashreplace",
        )
        self._written = os.path.getsize(filename) if os.path.exists(filename) else 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
            if 0 < self.maxBytes < self._written + len(line) and self._written:
                self.doRollover()
                self._written = 0
            if self.stream is None:
                self.stream = self._open()
            self.stream.write(line)
            self.flush()
            self._written += len(line)
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)


class _ProcessName(logging.Filter):
    """The spec's file format shows ``P{pid}`` where %(name)s stands."""

    def __init__(self, pid: int) -> None:
        super().__init__()
        self.name_for_record = f"P{pid}"

    def filter(self, record: logging.LogRecord) -> bool:
        record.name = self.name_for_record
        return True


@hookimpl
def parallelr_run_start(run: RunInfo) -> None:
    global _handler, _task_log
    cfg = run.settings.logging
    max_bytes = cfg.max_log_size_mb * 1024 * 1024
    handler = _CountingRotatingHandler(run.paths.main_log, max_bytes, cfg.backup_count)
    handler.setFormatter(logging.Formatter(cfg.file_format))
    handler.addFilter(_ProcessName(run.pid))
    handler.setLevel(cfg.level)
    logging.getLogger("parallelr").addHandler(handler)  # the core's and plugins' messages too
    _handler = handler
    _task_log = LineLogger("parallelr.main_log", handler, logging.getLevelName(cfg.level))
    _task_log.log(
        logging.INFO, "Starting parallel execution: %s tasks, %d workers, executor %s, command %s",
        "?" if run.task_count is None else run.task_count, run.workers, run.executor, run.command_template,
    )


@hookimpl
def parallelr_task_start(run: RunInfo, task: Task, worker_id: int) -> None:
    if _task_log is not None and _task_log.enabled(logging.INFO):
        again = f" (attempt {task.attempt})" if task.attempt > 1 else ""
        _task_log.log(logging.INFO, "Worker %d: Starting task %s%s", worker_id, task_label(task), again)


@hookimpl
def parallelr_task_retry(run: RunInfo, result: TaskResult, delay: float) -> None:
    if _task_log is not None:
        _task_log.log(
            logging.WARNING, "Task %s (attempt %d): %s: %s; retrying in %gs", result.status.value,
            result.attempt, task_label(result.task), result.error_message, delay,
        )


@hookimpl
def parallelr_task_finish(run: RunInfo, result: TaskResult) -> None:
    if _task_log is None:
        return
    if result.status is TaskStatus.SUCCESS:
        if _task_log.enabled(logging.INFO):
            _task_log.log(
                logging.INFO, "Task completed: %s (%.2fs)", task_label(result.task), result.duration
            )
        return
    _task_log.log(logging.WARNING, "Task %s: %s: %s", result.status.value, task_label(result.task),
                  result.error_message)


@hookimpl
def parallelr_run_finish(run: RunInfo, summary: RunSummary) -> None:
    global _handler, _task_log
    if _handler is None or _task_log is None:
        return
    _task_log.log(logging.INFO, "Run finished\n%s", "\n".join(summary_lines(run, summary)))
    logging.getLogger("parallelr").removeHandler(_handler)
    _handler.close()
    _handler = _task_log = None
