"""Output log reporter: each task's captured stdout/stderr tail, in the spec's block format.

Disabled with --no-task-output-log (the core then leaves ``run.paths.output_log`` as None). The
module only registers an :class:`OutputLogReporter` per run (``-p no:output_log`` blocks the
module, so nothing is registered); the object holds that run's file.
"""

from __future__ import annotations

from typing import IO, Any, Optional

from parallelr.hookspecs import hookimpl
from parallelr.model import RunInfo, RunSummary, TaskResult
from parallelr.report import blank_if_none, log_time, open_report, register_reporter

SEPARATOR = "=" * 80

REPORTER_NAME = "output-log-reporter"


@hookimpl
def parallelr_configure(config: Any) -> None:
    register_reporter(config.pluginmanager, REPORTER_NAME, OutputLogReporter())


def block(result: TaskResult, retry_in: Optional[float] = None) -> str:
    """The output log's block for one attempt; ``retry_in``: the attempt is retried after it."""
    task = result.task
    lines = [
        SEPARATOR,
        f"Task: {task.source}",
    ]
    if task.arguments:
        lines.append(f"Arguments: {' '.join(task.arguments)}")
    lines += [
        f"Worker: {result.worker_id}",
        f"Command: {task.command}",
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
        lines.append(f"Error: {result.error_message}")
    lines += ["", "STDOUT:", result.stdout.rstrip("\n"), "", "STDERR:", result.stderr.rstrip("\n"), ""]
    return "\n".join(lines) + "\n"


class OutputLogReporter:
    """The output log of one run (``trylast`` hooks: see ConsoleReporter)."""

    def __init__(self) -> None:
        self._file: Optional[IO[str]] = None

    def _write(self, text: str) -> None:
        if self._file is not None:
            self._file.write(text)
            self._file.flush()

    @hookimpl(trylast=True)
    def parallelr_run_start(self, run: RunInfo) -> None:
        if run.paths.output_log:
            self._file = open_report(run.paths.output_log)

    @hookimpl(trylast=True)
    def parallelr_task_finish(self, run: RunInfo, result: TaskResult) -> None:
        self._write(block(result))

    @hookimpl(trylast=True)
    def parallelr_task_retry(self, run: RunInfo, result: TaskResult, delay: float) -> None:
        """Every attempt gets its block, not only the last one."""
        self._write(block(result, retry_in=delay))

    @hookimpl(trylast=True)
    def parallelr_run_finish(self, run: RunInfo, summary: RunSummary) -> None:
        if self._file is not None:
            self._file.write(SEPARATOR + "\n")
            self._file.close()
        self._file = None
