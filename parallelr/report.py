"""What the built-in reporters share: how a per-run reporter is registered, the wording of the
per-task log lines, the end-of-run summary block, time stamps and how report files are opened.

The summary block's labels and the per-task lines are part of COMPAT.md (scripts grep them); keep
them exactly.
"""

from __future__ import annotations

import datetime
import logging
from typing import IO, Any, List, Optional, Tuple

import pluggy

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


class LineLogger:
    """Hands records straight to one handler, for the per-task lines of a reporter.

    ``Logger.info`` walks the logger hierarchy, looks up the calling frame and takes a lock per
    handler for every line; a reporter writes two lines per task on the scheduler's thread, and
    that dispatch cost several times the line itself. The records and formats are the same.
    """

    def __init__(self, name: str, handler: logging.Handler, level: int) -> None:
        self.name = name
        self.handler = handler
        self.level = level

    def enabled(self, levelno: int) -> bool:
        return levelno >= self.level

    def log(self, levelno: int, message: str, *args: Any) -> None:
        if levelno >= self.level:
            self.handler.handle(logging.LogRecord(self.name, levelno, __file__, 0, message, args, None))


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
        return f"{task.source} ({' '.join(task.arguments)})"
    return task.source


def task_started(task: Task, worker_id: int) -> LogLine:
    again = f" (attempt {task.attempt})" if task.attempt > 1 else ""
    return logging.INFO, "Worker %d: Starting task %s%s", (worker_id, task_label(task), again)


def task_retrying(result: TaskResult, delay: float) -> LogLine:
    return (
        logging.WARNING, "Task %s (attempt %d): %s: %s; retrying in %gs",
        (result.status.value, result.attempt, task_label(result.task), result.error_message, delay),
    )


def task_finished(result: TaskResult, no_message: str = "") -> LogLine:
    """``no_message`` stands in for an empty error message of a failed task: the console has
    always said ``no details`` there, the main log nothing."""
    if result.status is TaskStatus.SUCCESS:
        return logging.INFO, "Task completed: %s (%.2fs)", (task_label(result.task), result.duration)
    return (
        logging.WARNING, "Task %s: %s: %s",
        (result.status.value, task_label(result.task), result.error_message or no_message),
    )


def blank_if_none(value: Any) -> Any:
    """A value for a report column: '' for None (no PID, no exit code), the value otherwise."""
    return "" if value is None else value


def open_report(path: str, newline: Optional[str] = None) -> IO[str]:
    """Open (truncate) a report file of this run, in the encoding every report shares."""
    return open(path, "w", newline=newline, encoding=ENCODING, errors=ERRORS)


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
        "",
        "Process Info:",
        f"- Process ID: {run.pid}",
        f"- Workers: {run.workers}",
        f"- Executor: {run.executor}",
    ]
    if summary.interrupted_by:
        lines += ["", f"Run interrupted by {summary.interrupted_by}: {summary.cancelled} task(s) cancelled"]
    return lines
