"""What the live progress line costs: a whole run under a pseudo-terminal with ``--progress`` and
with ``--no-progress``, and the per-hook and per-console-line costs measured in-process.

    python3 bench/bench_progress.py [--tasks N] [--workers M] [--reps R]   (default 2000 8 5)

The runs are ``parallelr -A FILE -C "true @ARG@" -r -m M`` in a temporary HOME, stdout and stderr on
a pty of 80x24 whose other end is read (and thrown away) as fast as it comes, so the terminal never
holds the run up; ``--progress`` and ``--no-progress`` alternate, one of each per repetition, and
the medians are printed. The in-process part drives the progress reporter's hooks and the console
handler on a pty the same way, with the line on and off. Timings are of this machine at this
moment: run it on an idle one. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import fcntl
import io
import logging
import os
import pty
import resource
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

from parallelr import console
from parallelr.config import Settings
from parallelr.model import RunInfo, RunPaths, RunSummary, Task, TaskResult, TaskStatus
from parallelr.plugins.reporters.progress import ProgressReporter


class Pty:
    """A pseudo-terminal of 80x24 whose master end is drained by a thread."""

    def __init__(self) -> None:
        self.master, self.slave = pty.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        self.received = 0
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # the slave side closed (EIO)
                return
            if not data:
                return
            self.received += len(data)

    def close(self) -> None:
        os.close(self.slave)
        self._thread.join(timeout=5)
        os.close(self.master)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_run(root: Path, args_file: Path, workers: int, flag: str) -> Tuple[float, float, int]:
    """Wall seconds for one run with ``flag``, its CPU seconds (the runner's and its tasks': less
    noisy than the wall time on a busy machine) and the bytes its terminal received."""
    home = root / f"home{flag}{time.monotonic_ns()}"
    home.mkdir()
    terminal = Pty()
    env = dict(os.environ, HOME=str(home))
    env.pop("PYTHONPATH", None)
    argv = [sys.executable, "-m", "parallelr", "-A", str(args_file), "-C", "true @ARG@", "-r",
            "-m", str(workers), flag]
    cpu = _children_cpu()
    began = time.perf_counter()
    runner = subprocess.run(argv, env=env, cwd=str(root / "empty"), stdin=subprocess.DEVNULL,
                            stdout=terminal.slave, stderr=terminal.slave, check=False)
    elapsed = time.perf_counter() - began
    cpu = _children_cpu() - cpu
    terminal.close()
    if runner.returncode != 0:
        raise SystemExit(f"bench: {' '.join(argv)} exited {runner.returncode}")
    return elapsed, cpu, terminal.received


def whole_runs(tasks: int, workers: int, reps: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "empty").mkdir()
        args_file = root / "args.txt"
        args_file.write_text("".join(f"a{number}\n" for number in range(tasks)))
        times: Dict[str, List[float]] = {"--progress": [], "--no-progress": []}
        cpus: Dict[str, List[float]] = {flag: [] for flag in times}
        sent: Dict[str, int] = {}
        for _ in range(reps):
            for flag in times:
                elapsed, cpu, received = timed_run(root, args_file, workers, flag)
                times[flag].append(elapsed)
                cpus[flag].append(cpu)
                sent[flag] = received
        print(f"whole run: {tasks} x true, -m {workers}, on a pty, median of {reps}")
        for flag, values in times.items():
            print(f"  {flag:<14} wall {statistics.median(values):6.3f} s (min {min(values):.3f}, "
                  f"max {max(values):.3f}), CPU {statistics.median(cpus[flag]):6.3f} s; "
                  f"{sent[flag] / 1024:.0f} KiB to the terminal")
        for name, figures in (("wall", times), ("CPU", cpus)):
            on, off = statistics.median(figures["--progress"]), statistics.median(figures["--no-progress"])
            print(f"  difference {name:<4} {on - off:+6.3f} s  ({(on / off - 1) * 100:+.1f} %)")


def _run_info(tmp: str, count: int, progress: bool) -> RunInfo:
    paths = RunPaths(home=tmp, log_dir=tmp, workspace=tmp, pid_file=os.path.join(tmp, "p"),
                     main_log=os.path.join(tmp, "m.log"), summary_csv=os.path.join(tmp, "s.csv"),
                     output_log=None)
    return RunInfo(app_name="parallelr", pid=os.getpid(), started_at=time.time(), timestamp="t",
                   settings=Settings(), paths=paths, command_template="true @ARG@", executor="thread",
                   workers=8, task_count=count, options={"progress": progress})


def _per_call(calls: int, body: Callable[[], None]) -> float:
    """Microseconds per call of ``body``, the best of three rounds."""
    best = float("inf")
    for _ in range(3):
        began = time.perf_counter()
        for _ in range(calls):
            body()
        best = min(best, time.perf_counter() - began)
    return best / calls * 1e6


def in_process(calls: int) -> None:
    terminal = Pty()
    stream: Any = io.TextIOWrapper(io.FileIO(os.dup(terminal.slave), "w"), encoding="utf-8",
                                   line_buffering=True)
    task = Task(argv=["true", "a"], source="a", index=1)
    result = TaskResult(task=task, status=TaskStatus.SUCCESS, worker_id=1, start_time=1.0, end_time=1.1,
                        duration=0.1)
    print(f"in process, on a pty (best of 3 rounds of {calls}):")
    with tempfile.TemporaryDirectory() as tmp:
        for progress in (False, True):
            reporter = ProgressReporter(stream)
            run = _run_info(tmp, calls * 3, progress)
            reporter.parallelr_run_start(run)

            def hooks(reporter: ProgressReporter = reporter) -> None:
                reporter.parallelr_task_start()
                reporter.parallelr_task_finish(result)

            cost = _per_call(calls, hooks) / 2
            reporter.parallelr_run_finish(run, RunSummary(0, 0, 0, 0, 0, 0))
            print(f"  per hook (task_start/task_finish), line {'on ' if progress else 'off'}: {cost:6.2f} us")
        handler = console.ConsoleHandler("%(asctime)s - %(levelname)s - %(message)s")
        handler.setStream(stream)
        line = "[%d/%d] Task completed: %s (%.2fs)"
        record = logging.LogRecord("parallelr.console", logging.INFO, __file__, 0, line,
                                   (1, 2000, "/tmp/tasks/a.sh", 0.01), None)
        for progress in (False, True):
            reporter = ProgressReporter(stream)
            run = _run_info(tmp, calls, progress)
            reporter.parallelr_run_start(run)
            cost = _per_call(calls, lambda: handler.handle(record))
            reporter.parallelr_run_finish(run, RunSummary(0, 0, 0, 0, 0, 0))
            print(f"  per console line, line {'on ' if progress else 'off'}:                 {cost:6.2f} us")
    stream.close()
    terminal.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--calls", type=int, default=20000, help="hook calls per in-process round")
    options = parser.parse_args()
    in_process(options.calls)
    whole_runs(options.tasks, options.workers, options.reps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
