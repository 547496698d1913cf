"""CSV summary reporter: one semicolon-separated row per task, written and flushed as results arrive.

Columns and their order are fixed by COMPAT.md (scripts parse this file).
"""

from __future__ import annotations

import csv
from typing import IO, Any, Optional

from parallelr.hookspecs import hookimpl
from parallelr.model import RunInfo, RunSummary, TaskResult
from parallelr.report import iso_seconds

COLUMNS = (
    "start_time", "end_time", "status", "process_id", "worker_id", "task_file", "command",
    "exit_code", "duration_seconds", "memory_mb", "cpu_percent", "error_message",
)

_file: Optional[IO[str]] = None
_writer: Any = None


def _blank_if_none(value: Any) -> Any:
    return "" if value is None else value


@hookimpl
def parallelr_run_start(run: RunInfo) -> None:
    global _file, _writer
    # backslashreplace: an argument with undecodable bytes must not cost the row
    _file = open(run.paths.summary_csv, "w", newline="", encoding="utf-8", errors="backslashreplace")
    _writer = csv.writer(_file, delimiter=";", lineterminator="\n")
    _writer.writerow(COLUMNS)
    _file.flush()


@hookimpl
def parallelr_task_finish(run: RunInfo, result: TaskResult) -> None:
    if _writer is None or _file is None:
        return
    ran = result.start_time is not None
    _writer.writerow((
        iso_seconds(result.start_time),
        iso_seconds(result.end_time),
        result.status.value,
        _blank_if_none(result.pid),
        result.worker_id or "",
        result.task.source,
        result.task.command,
        _blank_if_none(result.exit_code),
        f"{result.duration:.2f}" if ran else "",
        f"{result.memory_mb:.2f}" if ran else "",
        f"{result.cpu_percent:.1f}" if ran else "",
        " ".join(result.error_message.split()),  # one physical line per row
    ))
    _file.flush()


@hookimpl
def parallelr_run_finish(run: RunInfo, summary: RunSummary) -> None:
    global _file, _writer
    if _file is not None:
        _file.close()
    _file = _writer = None
