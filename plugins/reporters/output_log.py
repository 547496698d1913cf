"""Output log reporter: each task's captured stdout/stderr tail, in the spec's block format.

Disabled with --no-task-output-log (the core then leaves ``run.paths.output_log`` as None). The
module only registers an :class:`OutputLogReporter` per run (``-p no:output_log`` blocks the
module, so nothing is registered); the object holds that run's file.
"""

from __future__ import annotations

import re
from typing import Any, Optional

from parallelr.hookspecs import hookimpl
from parallelr.model import RunInfo, RunSummary, TaskResult
from parallelr.report import (
    CONTROL_IN_LINES,
    ReportFile,
    blank_if_none,
    escape_line,
    log_time,
    never_started,
    register_reporter,
)

SEPARATOR = "=" * 80

REPORTER_NAME = "output-log-reporter"


@hookimpl
def parallelr_configure(config: Any) -> None:
    register_reporter(config.pluginmanager, REPORTER_NAME, OutputLogReporter())


# What a task's output may not write as it is: a control character (it would split or hide a
# line, or drive the terminal of whoever reads the log), a line starting with "=" (a block
# separator), and a line that is a section label of the block. This runs over every task's
# output on the scheduler's thread, so ordinary output is recognised at C speed (one regex with
# alternatives and "^" costs ~15 us per 1000 characters; these checks ~2 us) and written unchanged.
_PLAIN_ASCII = bytes(range(0x20, 0x7F)) + b"\t\n"  # ASCII output that may stay as it is
_LABEL_LINE = re.compile(r"^STD(?:OUT|ERR):$", re.MULTILINE)
_OUTPUT_LABELS = ("STDOUT:", "STDERR:")
OUTPUT_MARK = "\\"  # written before an output line that would look like the block's structure


def _needs_care(text: str) -> bool:
    if text.isascii():
        if text.encode("ascii").translate(None, _PLAIN_ASCII):  # something else is left: a control
            return True
    elif CONTROL_IN_LINES.search(text) is not None:
        return True
    if text.startswith("=") or "\n=" in text:
        return True
    return "STD" in text and _LABEL_LINE.search(text) is not None


def _output_line(line: str) -> str:
    line = escape_line(line)
    if line.startswith("=") or line in _OUTPUT_LABELS:
        return OUTPUT_MARK + line
    return line


def output_text(text: str) -> str:
    """A task's captured stdout or stderr as the block shows it: its lines as printed, except
    that control characters are escaped (report.escape_line) and a line that starts with ``=``
    or is ``STDOUT:``/``STDERR:`` gets a leading backslash, so output can neither end a block
    nor start one (or its STDERR section)."""
    text = text.rstrip("\n")
    if not _needs_care(text):
        return text
    return "\n".join(_output_line(line) for line in text.split("\n"))


def block(result: TaskResult, retry_in: Optional[float] = None) -> str:
    """The output log's block for one attempt; ``retry_in``: the attempt is retried after it."""
    task = result.task
    lines = [
        SEPARATOR,
        f"Task: {escape_line(task.source)}",
    ]
    if task.arguments:
        lines.append(f"Arguments: {escape_line(' '.join(task.arguments))}")
    lines += [
        f"Worker: {result.worker_id}",
        f"Command: {escape_line(task.command)}",
        f"Status: {result.status.value}",
        f"Exit Code: {blank_if_none(result.exit_code)}",
        f"Duration: {result.duration:.2f}s",
        f"Memory: {result.memory_mb:.2f}MB",
        f"Start: {log_time(result.start_time)}",
        f"End: {log_time(result.end_time)}",
    ]
    if result.attempt > 1 or retry_in is not None:
        lines.append(f"Attempt: {result.attempt}")
    if retry_in is not None:
        lines.append(f"Retry: attempt {result.attempt + 1} in {retry_in:g}s")
    if result.error_message:
        lines.append(f"Error: {escape_line(result.error_message)}")
    lines += ["", "STDOUT:", output_text(result.stdout), "", "STDERR:", output_text(result.stderr), ""]
    return "\n".join(lines) + "\n"


class OutputLogReporter:
    """The output log of one run (``trylast`` hooks: see ConsoleReporter).

    Each block is written whole or not at all (:class:`ReportFile`); after a write failed the
    reporter writes nothing more. A task that never started has no output and gets no block.
    """

    def __init__(self) -> None:
        self._file: Optional[ReportFile] = None

    @hookimpl(trylast=True)
    def parallelr_run_start(self, run: RunInfo) -> None:
        if run.paths.output_log:
            self._file = ReportFile(run.paths.output_log, "output log")

    @hookimpl(trylast=True)
    def parallelr_task_finish(self, run: RunInfo, result: TaskResult) -> None:
        file = self._file
        if file is not None and not never_started(result):
            file.write(block(result))

    @hookimpl(trylast=True)
    def parallelr_task_retry(self, run: RunInfo, result: TaskResult, delay: float) -> None:
        """Every attempt gets its block, not only the last one."""
        if self._file is not None:
            self._file.write(block(result, retry_in=delay))

    @hookimpl(trylast=True)
    def parallelr_run_finish(self, run: RunInfo, summary: RunSummary) -> None:
        file, self._file = self._file, None
        if file is not None:
            try:
                file.write(SEPARATOR + "\n")
            finally:
                file.close()
