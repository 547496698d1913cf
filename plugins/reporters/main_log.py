"""Main log reporter: the rotating ``parallelr_{PID}_{TIMESTAMP}.log`` of the spec.

It also receives every message of the core and plugins (the ``parallelr`` logger), so warnings
and errors of a daemon run end up in a file someone can read.

The module only registers a :class:`MainLogReporter` per run (``-p no:main_log`` blocks the module,
so nothing is registered); the object holds that run's handler.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
from typing import Any, Optional

from parallelr.console import LineWriting
from parallelr.errors import WriteError
from parallelr.hookspecs import hookimpl
from parallelr.model import RunInfo, RunSummary, Task, TaskResult
from parallelr.report import (
    ENCODING,
    ERRORS,
    LineLogger,
    LogLine,
    ReportFile,
    never_started,
    not_started_line,
    register_reporter,
    summary_lines,
    task_finished,
    task_retrying,
    task_started,
    write_error,
)

REPORTER_NAME = "main-log-reporter"
WHAT = "main log"  # how the error line names this file


@hookimpl
def parallelr_configure(config: Any) -> None:
    register_reporter(config.pluginmanager, REPORTER_NAME, MainLogReporter())


class _CountingRotatingHandler(LineWriting, logging.handlers.RotatingFileHandler):
    """RotatingFileHandler that counts what it writes instead of asking the file system.

    The stdlib handler stats the file, seeks to its end and formats each record twice to decide
    whether to roll over: several system calls per log line, on the scheduler's thread. This
    log has one writer (this run), so a count is exact enough (characters, not bytes: the file
    rolls over at about max_log_size_mb).

    Its stream is a :class:`ReportFile`: each line is written whole or not at all. A failed
    write is kept in :attr:`failure` instead of raised, since any ``parallelr`` log call anywhere
    in the core lands here; the reporter raises it from its own hook, once. After a failure the
    handler writes nothing more.
    """

    def __init__(self, filename: str, max_bytes: int, backup_count: int) -> None:
        self.failure: Optional[WriteError] = None
        super().__init__(
            filename, maxBytes=max_bytes, backupCount=backup_count, encoding=ENCODING, errors=ERRORS,
        )
        self._written = os.path.getsize(filename) if os.path.exists(filename) else 0

    def _open(self) -> Any:  # a ReportFile, not a text file: the handler only writes and closes it
        return ReportFile(self.baseFilename, WHAT, append=True)

    def _write_line(self, line: str) -> None:
        """Write one whole line, rolling over first when it would not fit; a failure is kept, and
        after it nothing more is written."""
        if self.failure is not None:
            return
        try:
            if 0 < self.maxBytes < self._written + len(line) and self._written:
                self.doRollover()
                self._written = 0
            if self.stream is None:
                self.stream = self._open()
            self.stream.write(line)  # unbuffered: nothing to flush
            self._written += len(line)
        except WriteError as exc:
            self.failure = exc
        except OSError as exc:  # renaming the backups when rolling over
            self.failure = write_error(WHAT, self.baseFilename, exc)


class _ProcessName(logging.Filter):
    """The spec's file format shows ``P{pid}`` where %(name)s stands."""

    def __init__(self, pid: int) -> None:
        super().__init__()
        self.name_for_record = f"P{pid}"

    def filter(self, record: logging.LogRecord) -> bool:
        record.name = self.name_for_record
        return True


class MainLogReporter:
    """The main log of one run. Its hooks are ``trylast`` for the reason ConsoleReporter's are:
    a plugin's last messages in a hook (the journal's, at run finish) still reach this file."""

    def __init__(self) -> None:
        self._handler: Optional[_CountingRotatingHandler] = None
        # task lines go to the file only, not through the ``parallelr`` logger to the console too
        self._task_log: Optional[LineLogger] = None
        self._reported = False  # the handler's failure has been raised (once per file)
        self._not_started = 0  # tasks that never started: one line for all at the end
        self._not_started_reason = ""

    def _check(self) -> None:
        """Raise the handler's write failure, once: a later hook writes nothing and says nothing."""
        handler = self._handler
        if handler is not None and handler.failure is not None and not self._reported:
            self._reported = True
            raise handler.failure

    def _log(self, line: LogLine) -> None:
        if self._task_log is not None:
            level, message, args = line
            self._task_log.log(level, message, *args)
            self._check()

    @hookimpl(trylast=True)
    def parallelr_run_start(self, run: RunInfo) -> None:
        cfg = run.settings.logging
        max_bytes = cfg.max_log_size_mb * 1024 * 1024
        handler = _CountingRotatingHandler(run.paths.main_log, max_bytes, cfg.backup_count)
        handler.setFormatter(logging.Formatter(cfg.file_format))
        handler.addFilter(_ProcessName(run.pid))
        handler.setLevel(cfg.level)
        logging.getLogger("parallelr").addHandler(handler)  # the core's and plugins' messages too
        self._handler = handler
        # The name the lines show is the one _ProcessName gives them.
        self._task_log = LineLogger(
            f"P{run.pid}", handler, logging.getLevelName(cfg.level), fmt=cfg.file_format
        )
        self._log((
            logging.INFO, "Starting parallel execution: %s tasks, %d workers, executor %s, command %s",
            ("?" if run.task_count is None else run.task_count, run.workers, run.executor,
             run.command_template),
        ))

    @hookimpl(trylast=True)
    def parallelr_task_start(self, run: RunInfo, task: Task, worker_id: int) -> None:
        self._log(task_started(task, worker_id))

    @hookimpl(trylast=True)
    def parallelr_task_retry(self, run: RunInfo, result: TaskResult, delay: float) -> None:
        self._log(task_retrying(result, delay))

    @hookimpl(trylast=True)
    def parallelr_task_finish(self, run: RunInfo, result: TaskResult) -> None:
        if never_started(result):
            if not self._not_started:
                self._not_started_reason = result.error_message
            self._not_started += 1
            return
        self._log(task_finished(result))

    @hookimpl(trylast=True)
    def parallelr_run_finish(self, run: RunInfo, summary: RunSummary) -> None:
        handler, task_log = self._handler, self._task_log
        if handler is None or task_log is None:
            return
        try:
            if self._not_started:
                self._log(not_started_line(self._not_started, self._not_started_reason))
            self._log((logging.INFO, "Run finished\n%s", ("\n".join(summary_lines(run, summary)),)))
        finally:
            logging.getLogger("parallelr").removeHandler(handler)
            handler.close()
            self._handler = self._task_log = None
