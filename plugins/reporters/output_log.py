"""Output log reporter: each task's captured stdout/stderr tail, in the spec's block format.

Disabled with --no-task-output-log (the core then leaves ``run.paths.output_log`` as None).
"""

from __future__ import annotations

from typing import IO, Optional

from parallelr.hookspecs import hookimpl
from parallelr.model import RunInfo, RunSummary, TaskResult
from parallelr.report import log_time

SEPARATOR = "=" * 80

_file: Optional[IO[str]] = None


@hookimpl
def parallelr_run_start(run: RunInfo) -> None:
    global _file
    if run.paths.output_log:
        _file = open(run.paths.output_log, "w", encoding="utf-8", errors="backslashreplace")


def _block(result: TaskResult, retry_in: Optional[float] = None) -> str:
    task = result.task
    exit_code = "" if result.exit_code is None else result.exit_code
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
        f"Exit Code: {exit_code}",
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


@hookimpl
def parallelr_task_finish(run: RunInfo, result: TaskResult) -> None:
    if _file is None:
        return
    _file.write(_block(result))
    _file.flush()


@hookimpl
def parallelr_task_retry(run: RunInfo, result: TaskResult, delay: float) -> None:
    """Every attempt gets its block, not only the last one."""
    if _file is None:
        return
    _file.write(_block(result, retry_in=delay))
    _file.flush()


@hookimpl
def parallelr_run_finish(run: RunInfo, summary: RunSummary) -> None:
    global _file
    if _file is not None:
        _file.write(SEPARATOR + "\n")
        _file.close()
    _file = None
