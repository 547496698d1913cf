"""What the built-in reporters share: how a per-run reporter is registered, the wording of the
per-task log lines and how a task's text is escaped in them, the end-of-run summary block, time
stamps and how report files are written (whole pieces, one error line when the disk is full).

The summary block's labels and the per-task lines are part of COMPAT.md (scripts grep them); keep
them exactly.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import logging
import os
import re
import threading
import time
from typing import Any, List, Optional, Tuple

import pluggy

from parallelr.errors import WriteError
from parallelr.model import RunInfo, RunSummary, Task, TaskResult, TaskStatus

# Report files are UTF-8; a byte that does not decode (an argument read from a file in another
# encoding) is written as \xNN instead of costing the row or the line.
ENCODING = "utf-8"
ERRORS = "backslashreplace"

# (level, %-format, args) of one log line, so that the console and the main log word a task's
# events once and each adds only its own framing (the console's [i/N] counter).
LogLine = Tuple[int, str, Tuple[Any, ...]]


def register_reporter(manager: pluggy.PluginManager, name: str, reporter: object) -> None:
    """Register the reporter object of a new run under ``name``, replacing the object of an
    earlier run on the same manager (pluggy refuses a second plugin of the same name).

    If ``name`` itself is blocked (``-p no:console-reporter``) pluggy registers nothing.
    """
    previous = manager.get_plugin(name)
    if previous is not None:
        manager.unregister(previous, name=name)
    manager.register(reporter, name=name)


class LineFormat:
    """A ``logging`` format string (``%``-style, no ``datefmt``) applied without a LogRecord, for
    the formats that use only the fields below: what ``logging.Formatter(fmt)`` makes of a record
    with these values, at a fraction of the cost (a LogRecord fills some twenty fields, and the
    time stamp is formatted once per second here instead of once per line)."""

    FIELDS = frozenset({"asctime", "levelname", "levelno", "name", "message", "process", "threadName"})
    _FIELD = re.compile(r"%\((\w+)\)")

    def __init__(self, fmt: str, name: str) -> None:
        self.fmt = fmt
        self.name = name
        fields = set(self._FIELD.findall(fmt))
        self._uses_time = "asctime" in fields
        self._uses_pid = "process" in fields
        self._uses_thread = "threadName" in fields
        self._second = -1
        self._stamp = ""

    @classmethod
    def supports(cls, fmt: str) -> bool:
        return set(cls._FIELD.findall(fmt)) <= cls.FIELDS

    def __call__(self, levelno: int, message: str) -> str:
        values = {
            "name": self.name,
            "levelname": logging.getLevelName(levelno),
            "levelno": levelno,
            "message": message,
            "process": os.getpid() if self._uses_pid else 0,
            "threadName": threading.current_thread().name if self._uses_thread else "",
        }
        if self._uses_time:
            created = time.time()
            second = int(created)
            if second != self._second:  # as Formatter.formatTime: time.localtime, no datefmt
                self._second = second
                self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(created))
            values["asctime"] = f"{self._stamp},{int((created - second) * 1000):03d}"
        return self.fmt % values


class LineLogger:
    """Hands records straight to one handler, for the per-task lines of a reporter.

    ``Logger.info`` walks the logger hierarchy, looks up the calling frame and takes a lock per
    handler for every line; a reporter writes two lines per task on the scheduler's thread, and
    that dispatch cost several times the line itself. When the handler can take a formatted line
    (``write_formatted``) and the format only uses :class:`LineFormat`'s fields, the line is
    formatted without a LogRecord at all; ``name`` is then the name the line shows (the handler's
    filters are not run). The lines are the same either way.
    """

    def __init__(self, name: str, handler: logging.Handler, level: int, fmt: Optional[str] = None) -> None:
        self.name = name
        self.handler = handler
        self.level = level
        write = getattr(handler, "write_formatted", None)
        self._format: Optional[LineFormat] = None
        self._write: Any = None
        if fmt is not None and write is not None and LineFormat.supports(fmt):
            self._format = LineFormat(fmt, name)
            self._write = write

    def enabled(self, levelno: int) -> bool:
        return levelno >= self.level

    def log(self, levelno: int, message: str, *args: Any) -> None:
        if levelno < self.level:
            return
        if self._format is None:
            self.handler.handle(logging.LogRecord(self.name, levelno, __file__, 0, message, args, None))
            return
        text = self._format(levelno, message % args if args else message)
        handler = self.handler
        handler.acquire()  # as Handler.handle: other threads log through this handler too
        try:
            self._write(text)
        finally:
            handler.release()


# Characters that would let a task's name, arguments, message or output split a log line, forge
# one, or drive the terminal that shows it: C0 controls except tab, DEL, C1 controls, and the two
# Unicode line separators (str.splitlines and some viewers break lines there too).
_CONTROLS_BUT_NEWLINE = "\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029"
_CONTROL = re.compile(f"[\n{_CONTROLS_BUT_NEWLINE}]")
# The same within a text of several lines (a task's output), whose newlines are its structure.
CONTROL_IN_LINES = re.compile(f"[{_CONTROLS_BUT_NEWLINE}]")
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r"}


def _visible(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED_ESCAPES.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_line(text: str) -> str:
    """``text`` with every control character written as a visible escape (newline as ``\\n``,
    ESC as ``\\x1b``), so that it stays one line of a log and prints as itself on a terminal.

    Every line the reporters write about a task goes through here (the CSV excepted: it is data
    and quotes instead). Plain text is returned as it is, after one C-speed isprintable() check.
    """
    if text.isprintable():
        return text
    return _CONTROL.sub(_visible, text)


def escape_controls(text: str) -> str:
    """``text`` with its newlines kept and every other control character written as a visible
    escape, as :func:`escape_line` writes them: for a text of several lines (an output tail)."""
    if text.isprintable():
        return text
    return CONTROL_IN_LINES.sub(_visible, text)


def never_started(result: TaskResult) -> bool:
    """A task the run recorded without starting it (a stop or a signal came first): it gets its
    CSV row, but the console and the main log count it in one line at the end instead of a line
    each, and the output log has nothing to show for it. A million of them pass through here after
    a Ctrl+C, so the cheapest test comes first."""
    return result.start_time is None and result.worker_id == 0 and result.status is TaskStatus.CANCELLED


def not_started_line(count: int, first_reason: str) -> LogLine:
    """The one line for every task that never started, with the reason of the first."""
    return logging.WARNING, "%d task(s) not started: %s", (count, escape_line(first_reason))


def iso_seconds(epoch: Optional[float]) -> str:
    """``2025-09-29T14:30:15`` (local time), or '' when the task never started."""
    if epoch is None:
        return ""
    return datetime.datetime.fromtimestamp(epoch).strftime("%Y-%m-%dT%H:%M:%S")


def log_time(epoch: Optional[float]) -> str:
    """``2025-09-29 14:30:15.123456`` (local time), or '' when unknown."""
    if epoch is None:
        return ""
    return datetime.datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S.%f")


def task_label(task: Task) -> str:
    """How a task is named in console and log lines: its file, plus its arguments if any."""
    if task.arguments:
        return escape_line(f"{task.source} ({' '.join(task.arguments)})")
    return escape_line(task.source)


def task_started(task: Task, worker_id: int) -> LogLine:
    again = f" (attempt {task.attempt})" if task.attempt > 1 else ""
    return logging.INFO, "Worker %d: Starting task %s%s", (worker_id, task_label(task), again)


def task_retrying(result: TaskResult, delay: float) -> LogLine:
    return (
        logging.WARNING, "Task %s (attempt %d): %s: %s; retrying in %gs",
        (result.status.value, result.attempt, task_label(result.task), escape_line(result.error_message),
         delay),
    )


def task_finished(result: TaskResult, no_message: str = "") -> LogLine:
    """``no_message`` stands in for an empty error message of a failed task: the console has
    always said ``no details`` there, the main log nothing."""
    if result.status is TaskStatus.SUCCESS:
        return logging.INFO, "Task completed: %s (%.2fs)", (task_label(result.task), result.duration)
    return (
        logging.WARNING, "Task %s: %s: %s",
        (result.status.value, task_label(result.task), escape_line(result.error_message) or no_message),
    )


def blank_if_none(value: Any) -> Any:
    """A value for a report column: '' for None (no PID, no exit code), the value otherwise."""
    return "" if value is None else value


def write_error(what: str, path: str, error: OSError) -> WriteError:
    """The one line a failed report write ends the run with: the file and the system's reason."""
    return WriteError(f"cannot write the {what} {path}: {error.strerror or error}")


class ReportFile:
    """A report file written in whole pieces (a CSV row, a log line, an output block).

    Each ``write`` is one unbuffered write of the whole piece, so there is nothing to flush and
    a reader sees only whole pieces. When a write fails (a full disk takes part of a piece, then
    says ENOSPC) the file is cut back to the end of the last whole piece, closed, and the failure
    raised once as a :class:`WriteError` naming ``what`` and the path; later writes do nothing,
    so a run that goes on after the error neither adds half lines nor repeats the error.
    """

    def __init__(self, path: str, what: str, append: bool = False) -> None:
        self.path = path
        self.what = what
        self._fd: Optional[int] = None
        self._size = 0  # bytes of whole pieces in the file: where a failed write is cut back to
        flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (os.O_APPEND if append else os.O_TRUNC)
        try:
            self._fd = os.open(path, flags, 0o666)
            if append:
                self._size = os.fstat(self._fd).st_size
        except OSError as exc:
            self.close()
            raise write_error(what, path, exc) from None

    @property
    def closed(self) -> bool:
        return self._fd is None

    def write(self, text: str) -> None:
        fd = self._fd
        if fd is None:
            return
        data = text.encode(ENCODING, ERRORS)
        try:
            done = os.write(fd, data)
            while done < len(data):  # a short write: the rest fails (ENOSPC) or goes on
                more = os.write(fd, memoryview(data)[done:])
                if more <= 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                done += more
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, self._size)  # no half piece stays behind
            self.close()
            raise write_error(self.what, self.path, exc) from None
        self._size += len(data)

    def flush(self) -> None:
        """Nothing is buffered; here for the logging handler, which flushes its stream."""

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):  # what could not be written, write() reported
                os.close(fd)


def summary_lines(run: RunInfo, summary: RunSummary) -> List[str]:
    settings = run.settings
    limits = settings.limits
    paths = run.paths
    lines = [
        "Parallel Task Execution Summary",
        "===============================",
    ]
    if run.run_id:
        lines.append(f"Run ID: {run.run_id}")
    lines += [
        f"Total Tasks: {summary.total}",
        f"Completed Successfully: {summary.succeeded}",
        f"Failed: {summary.failed}",
        f"Cancelled: {summary.cancelled}",
        f"Success Rate: {summary.success_rate:.1f}%",
    ]
    if summary.timed_out or summary.errored:
        lines.append(f"  (of the failed: {summary.timed_out} timed out, {summary.errored} could not start)")
    lines += [
        "",
        "Performance Statistics:",
        f"- Average Duration: {summary.avg_duration:.2f}s",
        f"- Maximum Duration: {summary.max_duration:.2f}s",
        f"- Minimum Duration: {summary.min_duration:.2f}s",
        f"- Average Memory Usage: {summary.avg_memory_mb:.2f}MB",
        f"- Peak Memory Usage: {summary.peak_memory_mb:.2f}MB",
        "",
        "Directories:",
        f"- Working Dir: {paths.workspace}",
        f"- Workspace Type: {'Isolated' if settings.execution.workspace_isolation else 'Shared'}",
        f"- Log Dir: {paths.log_dir}",
        "",
        "Auto-Stop Protection:",
    ]
    if limits.stop_limits_enabled:
        lines += [
            "- Stop Limits: Enabled",
            f"- Max Consecutive Failures: {limits.max_consecutive_failures}",
            f"- Max Failure Rate: {limits.max_failure_rate:.0%}"
            f" (after {limits.min_tasks_for_rate_check} tasks)",
        ]
        if summary.stop_reason:
            lines.append(f"- Stopped: {summary.stop_reason}")
    else:
        lines.append("- Stop Limits: Disabled")
    output = (
        f"{paths.output_log} (enabled by default, disable with --no-task-output-log)"
        if paths.output_log
        else "disabled (--no-task-output-log)"
    )
    lines += [
        "",
        "Log Files:",
        f"- Main Log: {paths.main_log} (rotating)",
        f"- Summary: {paths.summary_csv} (session-specific)",
        f"- Output: {output}",
        *([f"- Results: {paths.results_jsonl}"] if paths.results_jsonl else []),
        "",
        "Process Info:",
        f"- Process ID: {run.pid}",
        f"- Workers: {run.workers}",
        f"- Executor: {run.executor}",
    ]
    if summary.problems:  # e.g. a journal that could not record every result: the run failed
        lines += ["", "Problems:", *(f"- {escape_line(problem)}" for problem in summary.problems)]
    if summary.interrupted_by:
        lines += ["", f"Run interrupted by {summary.interrupted_by}: {summary.cancelled} task(s) cancelled"]
    return lines
