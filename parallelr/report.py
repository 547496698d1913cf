"""Formatting shared by reporters: the end-of-run summary block and time stamps.

The summary block's labels are part of COMPAT.md (scripts grep them); keep them exactly.
"""

from __future__ import annotations

import datetime
import logging
from typing import Any, List, Optional

from parallelr.model import RunInfo, RunSummary, Task


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
