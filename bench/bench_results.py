"""The JSONL results file: what a task line costs the scheduler's thread, and how fast the viewer
(``parallelr results`` / ``psr``) reads a big file.

    python3 bench/bench_results.py [LINES]   (default 100000)

Writer: microseconds per task line, formatted only and formatted + written (one unbuffered
write per line, as in a run), for a finished file-mode task, a finished arguments-mode task with
-E variables, and a CANCELLED task that never started (a million of those pass after a Ctrl+C);
the CSV summary's row for the same results as the yardstick. Viewer: the CLI (``sys.executable
-m parallelr results FILE -o /dev/null``) on a file of LINES task lines in each format, with two
filters and with --stats: wall time, lines per second, and the child's peak RSS (a streaming
reader stays flat as the file grows). Not a test: figures depend on the machine.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, List

from parallelr.config import Settings
from parallelr.model import RunInfo, RunPaths, RunSummary, Task, TaskResult, TaskStatus
from parallelr.plugins.reporters.csv_summary import RowFormatter, row
from parallelr.plugins.reporters.results_jsonl import ResultsJsonlReporter, TaskLines

REPEAT = 200_000


def _run(folder: Path) -> RunInfo:
    paths = RunPaths(home=str(folder), log_dir=str(folder), workspace=str(folder), pid_file=str(folder / "p"),
                     main_log=str(folder / "m.log"), summary_csv=str(folder / "s.csv"), output_log=None,
                     results_jsonl=str(folder / "r.jsonl"))
    return RunInfo(app_name="parallelr", pid=os.getpid(), started_at=time.time(), timestamp="03Dec26_120000",
                   settings=Settings(), paths=paths, command_template="ping -c 1 @ARG_1@", executor="thread",
                   workers=4, options={"TasksDir": [], "arguments_file": "hosts.txt", "env_var": ["HOST"]})


def _results() -> List[tuple]:
    now = time.time()
    file_task = Task(argv=["bash", "/home/u/tasks/task 0042.sh"], source="/home/u/tasks/task 0042.sh",
                     task_file="/home/u/tasks/task 0042.sh")
    argument_task = Task(argv=["ping", "-c", "1", "web-0042.example.com"], source="/home/u/hosts.txt:42",
                         env={"HOST": "web-0042.example.com"}, arguments=["web-0042.example.com", "80"],
                         line_number=42)
    finished = dict(status=TaskStatus.SUCCESS, worker_id=3, pid=12345, exit_code=0, start_time=now - 1.5,
                    end_time=now, duration=1.5, memory_mb=12.3456, cpu_percent=41.25)
    return [
        ("file mode, finished", TaskResult(task=file_task, **finished)),
        ("arguments + -E, finished", TaskResult(task=argument_task, **finished)),
        ("never started (CANCELLED)", TaskResult.cancelled(argument_task, "Run interrupted by SIGINT")),
    ]


def _per_call(action: Callable[[], object], count: int = REPEAT) -> float:
    began = time.perf_counter()
    for _ in range(count):
        action()
    return (time.perf_counter() - began) / count * 1e6


def writer(folder: Path) -> None:
    run = _run(folder)
    lines = TaskLines(run)
    csv_row = RowFormatter()
    print(f"writer, microseconds per task ({REPEAT} each):")
    print(f"  {'':28} {'JSONL line':>11} {'+ write':>9} {'CSV row':>9}")
    for label, result in _results():
        formatted = _per_call(lambda result=result: lines(result))
        reporter = ResultsJsonlReporter()
        reporter.parallelr_run_start(run)
        finish = reporter.parallelr_task_finish
        written = _per_call(lambda result=result, finish=finish: finish(run, result))
        reporter.parallelr_run_finish(run, RunSummary(0, 0, 0, 0, 0, 0))
        as_csv = _per_call(lambda result=result: csv_row(row(result)))
        print(f"  {label:28} {formatted:11.2f} {written:9.2f} {as_csv:9.2f}")


def _results_file(folder: Path, count: int) -> Path:
    run = _run(folder)
    reporter = ResultsJsonlReporter()
    reporter.parallelr_run_start(run)
    samples = [result for _, result in _results()]
    statuses = (TaskStatus.SUCCESS, TaskStatus.SUCCESS, TaskStatus.FAILED)
    for number in range(count):
        result = samples[number % 2]
        if number % 10 == 9:
            result = samples[2]
        elif result.status is not statuses[number % 3]:
            result = TaskResult(task=result.task, status=statuses[number % 3], worker_id=1 + number % 4,
                                exit_code=1, start_time=result.start_time, end_time=result.end_time,
                                duration=0.25, error_message="Exit code 1")
        reporter.parallelr_task_finish(run, result)
    reporter.parallelr_run_finish(run, RunSummary(0, 0, 0, 0, 0, 0))
    return Path(run.paths.results_jsonl or "")


def viewer(folder: Path, count: int) -> None:
    path = _results_file(folder, count)
    size = path.stat().st_size / 2**20
    print(f"\nviewer on {count} task lines ({size:.1f} MiB), via the CLI, output to /dev/null:")
    env = dict(os.environ, HOME=str(folder))
    cases = [
        ("csv, default columns", []),
        ("csv, -c with dotted paths", ["-c", "status,env_vars.HOST,arguments.1,exit_code"]),
        ("csv, two filters", ["-f", "status=FAILED", "-f", "env_vars.HOST=web-0042.example.com"]),
        ("jsonl", ["--format", "jsonl"]),
        ("table", ["--format", "table"]),
        ("--stats", ["--stats"]),
    ]
    for label, options in cases:
        began = time.perf_counter()
        child = subprocess.Popen([sys.executable, "-m", "parallelr", "results", str(path), "-o", os.devnull,
                                  *options], env=env, cwd=str(folder), stdout=subprocess.DEVNULL)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        elapsed = time.perf_counter() - began
        peak = usage.ru_maxrss / 1024  # KiB on Linux
        print(f"  {label:28} {elapsed:6.2f}s  {count / elapsed:9.0f} lines/s  peak RSS {peak:6.1f} MiB"
              f"  (exit {child.returncode})")


if __name__ == "__main__":
    lines = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with tempfile.TemporaryDirectory() as temporary:
        writer(Path(temporary))
        viewer(Path(temporary), lines)
    print(f"\n(this process: peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} MiB)")
