"""Graceful shutdown on SIGTERM/SIGINT/SIGHUP: running tasks stopped, the rest cancelled, all accounted."""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
from pathlib import Path
from typing import Any, Dict, List

import psutil
import pytest
from ops_support import WaitUntil, none_running, output, read_csv, start_run, task_processes, write_tasks

# Each task records its own PID and that of a child it waits for: both must be gone at the end.
SLEEPING_TASK = 'echo $$ > "{pids}/{name}.pid"\nsleep 30 &\necho $! > "{pids}/{name}.child"\nwait\n'
# Ignores SIGTERM (and so does its child): only SIGKILL stops it.
STUBBORN_TASK = "trap '' TERM\n" + SLEEPING_TASK
# Waits until the test releases it: the test decides when the first task ends.
RELEASED_TASK = 'echo $$ > "{pids}/{name}.pid"\nwhile [ ! -e "{pids}/release" ]; do sleep 0.05; done\n'


def make_tasks(tmp_path: Path, count: int, body: str) -> Path:
    return write_tasks(tmp_path, {f"t{n}": body for n in range(1, count + 1)})


def started_names(tmp_path: Path) -> List[str]:
    return sorted(path.stem for path in (tmp_path / "taskpids").glob("*.pid"))


def csv_rows(home: Path) -> List[Dict[str, str]]:
    summaries = list((home / "parallelr" / "logs").glob("*_summary.csv"))
    assert len(summaries) == 1, summaries
    return read_csv(summaries[0])


def wait_exit(run: subprocess.Popen, timeout: float) -> int:
    try:
        return run.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the run did not end within {timeout:g}s of the signal")


# -- the first signal: graceful ---------------------------------------------------------------
@pytest.mark.parametrize("executor", ["thread", "process"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_cancels_running_and_unstarted_tasks(
    tmp_path: Path, home: Path, janitor: Any, wait_until: WaitUntil, signum: int, executor: str
) -> None:
    tasks = make_tasks(tmp_path, 6, SLEEPING_TASK)
    run = start_run(janitor, home, tmp_path, tasks, "-m", "3", "--executor", executor)
    started = task_processes(tmp_path, wait_until, ["t1", "t2", "t3"])
    assert len(started) == 6
    wait_until(lambda: output(tmp_path)[0].count("Starting task") == 3, 10, "three 'Starting task' lines")

    run.send_signal(signum)
    assert wait_exit(run, 20) == 128 + signum
    stdout, stderr = output(tmp_path)
    name = signal.Signals(signum).name
    text = stdout + stderr
    assert re.search(rf"received {name}: shutting down", stderr), stderr
    assert "Total Tasks: 6\n" in stdout
    assert "Cancelled: 6\n" in stdout
    assert f"Run interrupted by {name}: 6 task(s) cancelled" in stdout
    assert "Traceback" not in text

    rows = csv_rows(home)
    assert len(rows) == 6
    assert [row["status"] for row in rows] == ["CANCELLED"] * 6
    by_task = {Path(row["task_file"]).stem: row for row in rows}
    assert sorted(by_task) == [f"t{n}" for n in range(1, 7)]
    assert started_names(tmp_path) == ["t1", "t2", "t3"]
    assert sorted(by_task[n]["worker_id"] for n in ("t1", "t2", "t3")) == ["1", "2", "3"]
    assert all(by_task[n]["start_time"] for n in ("t1", "t2", "t3"))
    assert [(by_task[n]["worker_id"], by_task[n]["start_time"]) for n in ("t4", "t5", "t6")] == [("", "")] * 3
    wait_until(lambda: none_running(started), 10, "the task processes to end")
    wait_until(lambda: janitor.survivors() == [], 10, "every process of the run to end")


def test_sighup_stops_a_foreground_run(
    tmp_path: Path, home: Path, janitor: Any, wait_until: WaitUntil
) -> None:
    tasks = make_tasks(tmp_path, 2, SLEEPING_TASK)
    run = start_run(janitor, home, tmp_path, tasks, "-m", "1")
    started = task_processes(tmp_path, wait_until, ["t1"])
    run.send_signal(signal.SIGHUP)
    assert wait_exit(run, 20) == 128 + signal.SIGHUP
    assert [row["status"] for row in csv_rows(home)] == ["CANCELLED", "CANCELLED"]
    assert "Run interrupted by SIGHUP: 2 task(s) cancelled" in output(tmp_path)[0]
    wait_until(lambda: none_running(started), 10, "the task processes to end")


# -- the second signal: at once ---------------------------------------------------------------
@pytest.mark.parametrize("executor", ["thread", "process"])
def test_second_sigint_kills_tasks_that_ignore_sigterm(
    tmp_path: Path, home: Path, janitor: Any, wait_until: WaitUntil, executor: str, user_config: Any
) -> None:
    # A long grace: if the second SIGINT did not kill at once, the run would outlast the deadline.
    user_config("execution:\n  kill_grace_seconds: 60\n")
    tasks = make_tasks(tmp_path, 3, STUBBORN_TASK)
    run = start_run(janitor, home, tmp_path, tasks, "-m", "2", "--executor", executor)
    started = task_processes(tmp_path, wait_until, ["t1", "t2"])

    run.send_signal(signal.SIGINT)
    # Signals that arrive before Python runs the handler count once: let the first one land.
    wait_until(lambda: "received SIGINT: shutting down" in output(tmp_path)[1], 10, "the shutdown line")
    run.send_signal(signal.SIGINT)
    assert wait_exit(run, 30) == 130
    stdout, stderr = output(tmp_path)
    assert "again" in stderr
    assert "Cancelled: 3\n" in stdout
    rows = csv_rows(home)
    assert [row["status"] for row in rows] == ["CANCELLED"] * 3
    by_task = {Path(row["task_file"]).stem: row["worker_id"] for row in rows}
    assert by_task == {"t1": by_task["t1"], "t2": by_task["t2"], "t3": ""}
    assert sorted((by_task["t1"], by_task["t2"])) == ["1", "2"]
    wait_until(lambda: none_running(started), 10, "the task processes to end")
    wait_until(lambda: janitor.survivors() == [], 10, "every process of the run to end")


# -- daemons ----------------------------------------------------------------------------------
def sig_ignored(pid: int, signum: int) -> bool:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return bool(int(line.split()[1], 16) & (1 << (signum - 1)))
    raise AssertionError("no SigIgn line")


def test_a_daemon_ignores_sighup(
    tmp_path: Path, home: Path, janitor: Any, run_cli: Any, wait_until: WaitUntil
) -> None:
    tasks = write_tasks(tmp_path, {"t1": RELEASED_TASK, "t2": SLEEPING_TASK})
    argv = ["-T", str(tasks), "-C", "bash @TASK@", "-r", "-D", "-m", "1"]
    started = run_cli(argv, env=janitor.env, timeout=10)
    assert started.returncode == 0, started.output
    pid = int(re.search(r"daemon with PID (\d+)", started.stdout).group(1))
    summary = Path(re.search(r"^- Summary: (\S+)$", started.stdout, re.M).group(1))
    task_processes(tmp_path, wait_until, ["t1"], kinds=("pid",))

    assert sig_ignored(pid, signal.SIGHUP)
    psutil.Process(pid).send_signal(signal.SIGHUP)
    (tmp_path / "taskpids" / "release").touch()
    # A run that was shutting down would start no further task: t2 starting proves it carries on.
    task_processes(tmp_path, wait_until, ["t2"], kinds=("pid",))
    assert psutil.Process(pid).status() != psutil.STATUS_ZOMBIE

    killed = run_cli(["-k", str(pid)], env=janitor.env, timeout=30)
    assert killed.returncode == 0, killed.output
    with contextlib.suppress(psutil.NoSuchProcess):
        psutil.Process(pid).wait(timeout=15)
    rows = {Path(row["task_file"]).stem: row["status"] for row in read_csv(summary)}
    assert rows == {"t1": "SUCCESS", "t2": "CANCELLED"}
    wait_until(lambda: janitor.survivors() == [], 10, "every process of the run to end")
