"""CSV summary reporter: one semicolon-separated row per task, written and flushed as results arrive.

Columns and their order are fixed by COMPAT.md (scripts parse this file). The module only registers
a :class:`CsvSummaryReporter` per run (``-p no:csv_summary`` blocks the module, so nothing is
registered); the object holds that run's file.
"""

from __future__ import annotations

import csv
from typing import IO, Any, Optional, Tuple

from parallelr.hookspecs import hookimpl
from parallelr.model import RunInfo, RunSummary, TaskResult
from parallelr.report import blank_if_none, iso_seconds, open_report, register_reporter

COLUMNS = (
    "start_time", "end_time", "status", "process_id", "worker_id", "task_file", "command",
    "exit_code", "duration_seconds", "memory_mb", "cpu_percent", "error_message",
)

REPORTER_NAME = "csv-summary-reporter"


@hookimpl
def parallelr_configure(config: Any) -> None:
    register_reporter(config.pluginmanager, REPORTER_NAME, CsvSummaryReporter())


def row(result: TaskResult) -> Tuple[Any, ...]:
    """The CSV row of one result, in the order of COLUMNS."""
    ran = result.start_time is not None
    return (
        iso_seconds(result.start_time),
        iso_seconds(result.end_time),
        result.status.value,
        blank_if_none(result.pid),
        result.worker_id or "",
        result.task.source,
        result.task.command,
        blank_if_none(result.exit_code),
        f"{result.duration:.2f}" if ran else "",
        f"{result.memory_mb:.2f}" if ran else "",
        f"{result.cpu_percent:.1f}" if ran else "",
        " ".join(result.error_message.split()),  # one physical line per row
    )


class CsvSummaryReporter:
    """The summary CSV of one run (``trylast`` hooks: see ConsoleReporter)."""

    def __init__(self) -> None:
        self._file: Optional[IO[str]] = None
        self._writer: Any = None  # csv's writer type is not public

    @hookimpl(trylast=True)
    def parallelr_run_start(self, run: RunInfo) -> None:
        self._file = open_report(run.paths.summary_csv, newline="")  # csv writes its own line ends
        self._writer = csv.writer(self._file, delimiter=";", lineterminator="\n")
        self._writer.writerow(COLUMNS)
        self._file.flush()

    @hookimpl(trylast=True)
    def parallelr_task_finish(self, run: RunInfo, result: TaskResult) -> None:
        if self._writer is None or self._file is None:
            return
        self._writer.writerow(row(result))
        self._file.flush()

    @hookimpl(trylast=True)
    def parallelr_run_finish(self, run: RunInfo, summary: RunSummary) -> None:
        if self._file is not None:
            self._file.close()
        self._file = self._writer = None
