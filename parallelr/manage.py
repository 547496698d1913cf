"""--list-workers and -k: look at and stop this user's verified runs, never anything else."""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
import sys
import time
from typing import IO, List, Optional

import psutil

from parallelr.errors import ParallelrError, UsageError
from parallelr.process import is_running
from parallelr.registry import Registry, RunEntry

TERM_WAIT = 3.0  # seconds between SIGTERM and SIGKILL (COMPAT.md)
SETTLE_WAIT = 2.0  # after the tasks are killed, time for the runner to write its last rows
CONFIRM_PROMPT = "Are you sure? Type 'yes' to confirm: "


def list_workers(registry: Registry, out: IO[str] = sys.stdout) -> int:
    runs = registry.live_runs()
    if not runs:
        out.write("No running parallelr processes found.\n")
        return 0
    out.write(f"Found {len(runs)} running parallel-tasker process(es):\n\n")
    out.write(f"{'PID':<8} {'Status':<10} {'Start Time':<20} {'Log File':<43} {'Summary File':<43} Run ID\n")
    out.write("-" * 140 + "\n")
    for entry in sorted(runs, key=lambda run: run.started_at):
        start = datetime.datetime.fromtimestamp(entry.started_at).strftime("%Y-%m-%d %H:%M:%S")
        status = "daemon" if entry.daemon else "running"
        out.write(
            f"{entry.pid:<8} {status:<10} {start:<20} {os.path.basename(entry.main_log):<43} "
            f"{os.path.basename(entry.summary_csv):<43} {entry.run_id or '-'}\n"
        )
    out.write(f"\nLog directory: {os.path.dirname(runs[0].main_log)}\n")
    return 0


def _wait_gone(procs: List[psutil.Process], timeout: float) -> List[psutil.Process]:
    """Wait until the processes are gone; a zombie counts as gone (it runs nothing, and its
    parent, maybe init, reaps it in its own time). Returns the ones still running."""

    def running() -> List[psutil.Process]:
        return [proc for proc in procs if is_running(proc)]

    deadline = time.monotonic() + timeout
    alive = running()
    while alive:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        # psutil.wait_procs waits efficiently (it reaps our own children); a zombie we cannot
        # reap ends its wait only at the timeout, so wake at least every 0.1 s to look again.
        psutil.wait_procs(alive, timeout=min(remaining, 0.1))
        alive = running()
    return alive


def _descendants(process: psutil.Process) -> List[psutil.Process]:
    try:
        return process.children(recursive=True)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


def stop_run(entry: RunEntry, out: IO[str] = sys.stdout) -> None:
    """SIGTERM the run; after 3 s kill its task processes, then the run itself if it is still there."""
    try:
        runner = psutil.Process(entry.pid)
        if abs(runner.create_time() - entry.create_time) > 0.05:
            raise psutil.NoSuchProcess(entry.pid)
        tasks = _descendants(runner)
        runner.send_signal(signal.SIGTERM)  # psutil re-checks the process identity before signalling
    except psutil.NoSuchProcess:
        out.write(f"Process {entry.pid} has already ended.\n")
        return
    out.write(f"Sent SIGTERM to {entry.pid}; waiting up to {TERM_WAIT:.0f}s for it to stop...\n")
    alive = _wait_gone([runner], TERM_WAIT)
    if alive:
        leftover = {proc.pid: proc for proc in tasks + _descendants(runner)}
        for proc in leftover.values():
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()  # identity-checked: a reused PID is not ours and is not touched
        _wait_gone(list(leftover.values()), 1.0)
        alive = _wait_gone([runner], SETTLE_WAIT)
    if alive:
        try:
            runner.kill()
            out.write(f"Process {entry.pid} did not stop; sent SIGKILL.\n")
        except psutil.NoSuchProcess:
            pass
        _wait_gone([runner], 1.0)
    else:
        out.write(f"Process {entry.pid} stopped.\n")


def kill(registry: Registry, target: str, stdin: IO[str] = sys.stdin, out: IO[str] = sys.stdout) -> int:
    if target == "all":
        runs = registry.live_runs()
        if not runs:
            out.write("No running parallelr processes found.\n")
            return 0
        out.write(f"This stops {len(runs)} run(s): {', '.join(str(run.pid) for run in runs)}\n")
        out.write(CONFIRM_PROMPT)
        out.flush()
        answer: Optional[str] = stdin.readline() if stdin is not None else ""
        if stdin is None or not stdin.isatty():  # the answer was not echoed: end the prompt's line
            out.write("\n")
        if (answer or "").strip() != "yes":
            out.write("Aborted: nothing was stopped.\n")
            return 1
        for entry in runs:
            stop_run(entry, out)
            registry.unregister(entry.pid)
        return 0
    try:
        pid = int(target)
    except ValueError:
        raise UsageError(f"-k takes a process ID, got {target!r}") from None
    entry = registry.find(pid)
    if entry is None:
        raise ParallelrError(
            f"{pid} is not a running parallelr process of this user (see --list-workers); "
            "nothing was signalled"
        )
    stop_run(entry, out)
    registry.unregister(entry.pid)
    return 0
