"""Big arguments files: how soon the first task starts, how fast Ctrl+C ends the run, runner memory.

Usage::

    python3 bench/bench_big_input.py                       # 100k and 1M lines
    python3 bench/bench_big_input.py --sizes 100000,1000000,10000000 --timeout 300
    python3 bench/bench_big_input.py --only-source         # just the arguments file's count and check

For each size it writes an arguments file of N lines, starts ``parallelr -A FILE -C "sh -c '...' @ARG@"
-r -m 4`` (through ``bench/_measure.py``, so the runner's own peak RSS is recorded) with a throw-away
HOME, and measures:

* **first start**: seconds from launching the runner until its first task has started (the task
  touches a marker file; the runner's interpreter start-up is included, as a user waits for it);
* **Ctrl+C**: seconds from SIGINT (sent right after the first start, so N-4 tasks never started)
  until the runner has exited, its journal written;
* the runner's peak RSS and the size of the journal afterwards.

Each size runs with the journal and with ``--no-journal``; the difference is the journal's share.
``--only-source`` times the arguments-file source alone, in this process: the fast line count
and the check of every line that runs before the first task. ``--journal-cancel N`` times the
journal's side of a Ctrl+C alone, in this process: N stored, pending jobs whose tasks end
CANCELLED without starting (``parallelr_task_finish`` one by one, as the scheduler reports them),
until the writer has committed them and the run's end.

Like everything in bench/, this is a measurement, not a test: nothing asserts a duration.

Measured on the shared 2-core VM (Python 3.11), before and after the fix of "big inputs start
late" (with the journal; ``--no-journal`` in brackets; Ctrl+C is mostly the core's and the
reporters' cost of a million never-started tasks, not the journal's):

=========================  ========================  ======================================
lines                      before                    after
=========================  ========================  ======================================
100k: first start          3.50 s (0.45 s)           0.55 s (0.47 s)
100k: Ctrl+C               11.4 s (9.0 s)            4.4 s (3.6 s)
100k: RSS / journal        33 MB / 43 MB             36 MB / 1.6 MB
1M: first start            34.9 s (2.49 s)           0.82-0.89 s (0.74-0.77 s)
1M: Ctrl+C                 150 s (96 s)              33-37 s (29-34 s)
1M: RSS / journal          255 MB / 456 MB           37-39 MB / 1.3-1.8 MB
10M: first start           none within 130 s         1.06 s (1.01 s)
10M: Ctrl+C                -                         over 150 s (over 150 s)
source, 10M: count         -                         0.61 s (1M: 0.06 s)
source, 10M: check all     19.4 s (1M: 2.0 s)        19.9 s, all but 0.5 s of it while tasks run
journal alone, 1M stored   31.8 s, 1.25 GB RSS       8.2 s, 0.47 GB RSS (of it 0.44 GB: the
  pending jobs cancelled   (hooks 6.2 s)             bench's own million tasks; hooks 1.8 s)
=========================  ========================  ======================================
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

BENCH = Path(__file__).resolve().parent
MEASURE = BENCH / "_measure.py"
POLL = 0.005  # seconds between looks at the marker file


def write_arguments(path: Path, count: int) -> None:
    """``count`` lines ``host-0000001`` ..., written in big blocks (10M lines in a few seconds)."""
    block = 100_000
    with open(path, "w", encoding="ascii") as handle:
        for start in range(0, count, block):
            handle.write("".join(f"host-{n:08d}\n" for n in range(start + 1, min(count, start + block) + 1)))


def _wait_for(path: Path, process: subprocess.Popen, timeout: float) -> Optional[float]:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if path.exists():
            return time.monotonic()
        if process.poll() is not None:
            return None
        time.sleep(POLL)
    return None


def measure_run(arguments: Path, journal: bool, timeout: float) -> Dict[str, Any]:
    """One run: first start, Ctrl+C, peak RSS (see the module docstring)."""
    with tempfile.TemporaryDirectory(prefix="bench-big-") as scratch:
        root = Path(scratch)
        home, cwd = root / "home", root / "cwd"
        home.mkdir()
        cwd.mkdir()
        marker, usage = root / "started", root / "usage.json"
        command = f"sh -c 'touch {marker}; sleep 30' @ARG@"
        argv = [sys.executable, str(MEASURE), "-A", str(arguments), "-C", command, "-r", "-m", "4"]
        if not journal:
            argv.append("--no-journal")
        env = {**os.environ, "HOME": str(home), "PARALLELR_BENCH_USAGE": str(usage)}
        launched = time.monotonic()
        process = subprocess.Popen(argv, env=env, cwd=str(cwd), stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        result: Dict[str, Any] = {"journal": journal}
        try:
            first = _wait_for(marker, process, timeout)
            if first is None:
                result["first_start_s"] = None
                if process.poll() is None:
                    result["note"] = f"no task started within {timeout:g} s"
                else:
                    result["note"] = f"exited {process.returncode}: {process.stderr.read().decode()[-300:]}"
                return result
            result["first_start_s"] = round(first - launched, 3)
            process.send_signal(signal.SIGINT)
            interrupted = time.monotonic()
            try:
                process.wait(timeout)
                result["ctrl_c_s"] = round(time.monotonic() - interrupted, 3)
                result["exit_code"] = process.returncode
            except subprocess.TimeoutExpired:
                result["ctrl_c_s"] = None
                result["note"] = f"still running {timeout:g} s after SIGINT"
        finally:
            if process.poll() is None:
                process.kill()  # only the runner this function started
                process.wait()
            if process.stderr is not None:
                process.stderr.close()
        if usage.exists():
            result["peak_rss_mb"] = round(json.loads(usage.read_text())["maxrss_kib"] / 1024, 1)
        database = home / "parallelr" / "state.db"
        if database.exists():
            size = sum(path.stat().st_size for path in database.parent.glob("state.db*"))
            result["journal_mb"] = round(size / 1e6, 1)
        return result


def measure_source(arguments: Path) -> Dict[str, Any]:
    """The arguments-file source in this process: count and up-front check."""
    from parallelr.command import CommandTemplate
    from parallelr.plugins.sources import arguments_file as source

    figures: Dict[str, Any] = {}
    count = getattr(source, "count_argument_lines", None)
    if count is not None:
        started = time.perf_counter()
        figures["count"] = count(str(arguments))
        figures["count_s"] = round(time.perf_counter() - started, 3)
    plan = source.ArgumentsPlan(
        path=str(arguments), template=CommandTemplate.parse("true @ARG@", ()), template_path=None,
        separator=None, env_names=(), max_argument_length=131072,
    )
    started = time.perf_counter()
    for _ in source.argument_lines(str(arguments)):
        pass
    figures["read_lines_s"] = round(time.perf_counter() - started, 3)
    started = time.perf_counter()
    source._check_all_lines(plan)  # the full check of every line (what ran before the first task)
    figures["check_every_line_s"] = round(time.perf_counter() - started, 3)
    return figures


def measure_journal_cancel(count: int, timeout: float) -> Dict[str, Any]:
    """The journal alone: ``count`` never-started tasks reported CANCELLED, then the run's end."""
    import resource

    from parallelr.config import Settings
    from parallelr.model import RunInfo, RunPaths, RunSummary, Task, TaskResult
    from parallelr.plugins.journal.run import JournalRun

    with tempfile.TemporaryDirectory(prefix="bench-journal-") as scratch:
        home = Path(scratch)
        paths = RunPaths(home=str(home), log_dir=str(home), workspace=str(home), pid_file=str(home / "p"),
                         main_log=str(home / "m.log"), summary_csv=str(home / "s.csv"),
                         output_log=str(home / "o.txt"))
        run = RunInfo(app_name="parallelr", pid=os.getpid(), started_at=time.time(), timestamp="bench",
                      settings=Settings(), paths=paths, command_template="true @ARG@", executor="thread",
                      workers=4, task_count=count, options={"Command": "true @ARG@"},
                      run_id="20260101-000000-bench0")

        class Config:
            request = None

        tasks = [Task(argv=("true", f"host-{n}"), source=f"args:{n}", arguments=(f"host-{n}",), line_number=n,
                      index=n) for n in range(1, count + 1)]
        journal = JournalRun(Config())
        started = time.perf_counter()
        journal.parallelr_run_planned(run=run, tasks=tasks)
        planner = getattr(journal, "planner", None)
        while planner is not None and not planner.complete and time.perf_counter() - started < timeout:
            time.sleep(0.05)  # every job stored, as a run that stored them all up front had them
        stored = time.perf_counter() - started
        started = time.perf_counter()
        for task in tasks:
            journal.parallelr_task_finish(run=run, result=TaskResult.cancelled(
                task, "Not started: run interrupted by SIGINT"))
        reported = time.perf_counter() - started
        problems = getattr(journal, "parallelr_run_problems", None)
        if problems is not None:
            problems(run=run)
        summary = RunSummary(total=count, succeeded=0, failed=0, timed_out=0, errored=0, cancelled=count,
                             interrupted_by="SIGINT", exit_code=130)
        journal.parallelr_run_finish(run=run, summary=summary)
        ended = time.perf_counter() - started
    return {"jobs_stored_s": round(stored, 2), "hooks_s": round(reported, 2),
            "until_committed_s": round(ended, 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated line counts")
    parser.add_argument("--timeout", type=float, default=180, help="seconds to wait for each step")
    parser.add_argument("--only-source", action="store_true", help="time the source alone")
    parser.add_argument("--no-baseline", action="store_true", help="skip the --no-journal runs")
    parser.add_argument("--journal-cancel", type=int, metavar="N", help="time the journal's side of a Ctrl+C")
    parser.add_argument("--out", help="write the figures as JSON to this file")
    options = parser.parse_args(argv)
    if options.journal_cancel:
        entry = {"journal_cancel": options.journal_cancel,
                 **measure_journal_cancel(options.journal_cancel, options.timeout)}
        print(json.dumps(entry), flush=True)
        if options.out:
            Path(options.out).write_text(json.dumps([entry], indent=2) + "\n", encoding="utf-8")
        return 0
    figures: List[Dict[str, Any]] = []
    workdir = Path(tempfile.mkdtemp(prefix="bench-big-args-"))
    try:
        for size in (int(part) for part in options.sizes.split(",")):
            arguments = workdir / f"args-{size}.txt"
            write_arguments(arguments, size)
            entry: Dict[str, Any] = {"lines": size, "file_mb": round(arguments.stat().st_size / 1e6, 1)}
            if options.only_source:
                entry["source"] = measure_source(arguments)
            else:
                entry["runs"] = [measure_run(arguments, True, options.timeout)]
                if not options.no_baseline:
                    entry["runs"].append(measure_run(arguments, False, options.timeout))
            print(json.dumps(entry), flush=True)
            figures.append(entry)
            arguments.unlink()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if options.out:
        Path(options.out).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
