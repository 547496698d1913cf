"""Helpers shared by the daemon, kill and signal tests: task PID files, the PID file, CSV rows."""

from __future__ import annotations

import contextlib
import csv
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import psutil
import pytest

WaitUntil = Callable[..., Any]

# Each task records its own PID and that of a child it waits for: both must be gone at the end.
SLEEPING_TASK = 'echo $$ > "{pids}/{name}.pid"\nsleep {seconds} &\necho $! > "{pids}/{name}.child"\nwait\n'


def registered_pids(home: Path) -> List[int]:
    pid_file = home / "parallelr" / "pids" / "parallelr.pids"
    return [int(line) for line in pid_file.read_text().split()] if pid_file.exists() else []


def read_csv(path: Path) -> List[Dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle, delimiter=";"))


def task_processes(
    tmp_path: Path, wait_until: WaitUntil, names: List[str], kinds: Tuple[str, ...] = ("pid", "child"),
    timeout: float = 20,
) -> List[psutil.Process]:
    """The processes of the named tasks, once each has written its PID files."""
    folder = tmp_path / "taskpids"
    files = [folder / f"{name}.{kind}" for name in names for kind in kinds]
    wait_until(lambda: all(path.exists() and path.read_text().strip() for path in files), timeout,
               f"tasks {names} to start")
    found = []
    for path in files:
        with contextlib.suppress(psutil.NoSuchProcess):  # already gone: nothing to check
            found.append(psutil.Process(int(path.read_text())))
    return found


def none_running(procs: List[psutil.Process]) -> bool:
    def running(proc: psutil.Process) -> bool:
        try:
            return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    return not any(running(proc) for proc in procs)


def wait_ended(pid: int, timeout: float = 20) -> None:
    try:
        psutil.Process(pid).wait(timeout=timeout)
    except psutil.NoSuchProcess:
        pass
    except psutil.TimeoutExpired:
        pytest.fail(f"process {pid} still runs after {timeout}s")
