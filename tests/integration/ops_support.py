"""Helpers shared by the daemon, kill and signal tests: task PID files, the PID file, CSV rows."""

from __future__ import annotations

import contextlib
import csv
import subprocess
import sys
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


def start_run(janitor: Any, home: Path, tmp_path: Path, tasks: Path, *extra: str) -> subprocess.Popen:
    """A foreground run whose stdout and stderr go to files (read them with ``output``)."""
    argv = [sys.executable, "-m", "parallelr", "-T", str(tasks), "-C", "bash @TASK@", "-r", *extra]
    with (tmp_path / "stdout.txt").open("w") as out, (tmp_path / "stderr.txt").open("w") as err:
        return janitor.popen(argv, home, stdout=out, stderr=err)


def output(tmp_path: Path) -> Tuple[str, str]:
    """The stdout and stderr of the run ``start_run`` started."""
    return (tmp_path / "stdout.txt").read_text(), (tmp_path / "stderr.txt").read_text()


def write_tasks(tmp_path: Path, bodies: Dict[str, str]) -> Path:
    """``tasks/<name>.sh`` per body, formatted with ``{pids}`` (a folder for the tasks' PID files),
    ``{name}`` and ``{out}`` (the test's temp dir)."""
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    pids = tmp_path / "taskpids"
    pids.mkdir()
    for name, body in bodies.items():
        (tasks / f"{name}.sh").write_text(body.format(pids=pids, name=name, out=tmp_path))
    return tasks
