"""CSV summary reporter: one semicolon-separated row per task, written and flushed as results arrive.

Columns and their order are fixed by COMPAT.md (scripts parse this file). The module only registers
a :class:`CsvSummaryReporter` per run (``-p no:csv_summary`` blocks the module, so nothing is
registered); the object holds that run's file.
"""

from __future__ import annotations

import csv
import io
import re
from typing import Any, Optional, Tuple

from parallelr.hookspecs import hookimpl
from parallelr.model import RunInfo, RunSummary, TaskResult
from parallelr.report import ReportFile, blank_if_none, iso_seconds, register_reporter

COLUMNS = (
    "start_time", "end_time", "status", "process_id", "worker_id", "task_file", "command",
    "exit_code", "duration_seconds", "memory_mb", "cpu_percent", "error_message",
)

REPORTER_NAME = "csv-summary-reporter"


@hookimpl
def parallelr_configure(config: Any) -> None:
    register_reporter(config.pluginmanager, REPORTER_NAME, CsvSummaryReporter())


def _one_line(message: str) -> str:
    """The message with its whitespace runs as single spaces: one physical line per row (as the
    old tool wrote it). A plain message is already that; checking costs less than splitting."""
    if message.isprintable() and "  " not in message and message[:1] != " " and message[-1:] != " ":
        return message
    return " ".join(message.split())


def row(result: TaskResult) -> Tuple[Any, ...]:
    """The CSV row of one result, in the order of COLUMNS."""
    ran = result.start_time is not None
    if not ran and result.worker_id == 0:  # never started: after a Ctrl+C, a million of these
        return ("", "", result.status.value, blank_if_none(result.pid), "", result.task.source,
                result.task.command, blank_if_none(result.exit_code), "", "", "",
                _one_line(result.error_message))
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
        _one_line(result.error_message),
    )


class RowFormatter:
    """Formats one row at a time into a string, so that the file gets it in one whole write.

    The csv module quotes a field that holds the delimiter, the quote character or a character
    of the line terminator. With the file's "\\n" as terminator a bare "\\r" (an argument, a file
    name) stayed unquoted and a reader split the row there; with the csv default "\\r\\n" every
    field holding "\\r" or "\\n" is quoted, and the row's own terminator is turned back into "\\n".
    """

    # The csv module quotes a field exactly when it holds one of these (QUOTE_MINIMAL, no escape
    # character, "\r\n" terminator); a row of plain fields is their join, without the module.
    _QUOTED = re.compile('["\r\n]')

    def __init__(self) -> None:
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, delimiter=";", lineterminator="\r\n")

    def __call__(self, values: Tuple[Any, ...]) -> str:
        # The fast path for the common row: no field holds a quote, CR, LF or a ";" (the join
        # then has exactly one ";" between each two fields), so csv would write the join as it is.
        line = ";".join([value if value.__class__ is str else str(value) for value in values])
        if line.count(";") == len(values) - 1 and self._QUOTED.search(line) is None:
            return line + "\n"
        buffer = self._buffer
        buffer.seek(0)
        buffer.truncate()
        self._writer.writerow(values)
        return buffer.getvalue()[:-2] + "\n"


class CsvSummaryReporter:
    """The summary CSV of one run (``trylast`` hooks: see ConsoleReporter).

    The header and each row are written whole or not at all (:class:`ReportFile`); after a write
    failed, the reporter writes nothing more, so the file holds whole rows only.
    """

    def __init__(self) -> None:
        self._file: Optional[ReportFile] = None
        self._format = RowFormatter()

    @hookimpl(trylast=True)
    def parallelr_run_start(self, run: RunInfo) -> None:
        self._file = ReportFile(run.paths.summary_csv, "CSV summary")
        self._file.write(self._format(COLUMNS))

    @hookimpl(trylast=True)
    def parallelr_task_finish(self, run: RunInfo, result: TaskResult) -> None:
        file = self._file
        if file is not None:
            file.write(self._format(row(result)))

    @hookimpl(trylast=True)
    def parallelr_run_finish(self, run: RunInfo, summary: RunSummary) -> None:
        if self._file is not None:
            self._file.close()
        self._file = None
