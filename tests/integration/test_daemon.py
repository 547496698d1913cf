"""Daemon mode (-D): detaches at once, registers itself, logs to files, unregisters at its end."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import attrs
import psutil
from ops_support import SLEEPING_TASK, WaitUntil, none_running, registered_pids, task_processes, wait_ended
from ops_support import read_csv as csv_rows


@attrs.frozen
class Daemon:
    pid: int
    main_log: Path
    summary_csv: Path
    stdout: str


def make_tasks(tmp_path: Path, bodies: Dict[str, str]) -> Path:
    tasks = tmp_path / "tasks"
    tasks.mkdir(exist_ok=True)
    (tmp_path / "taskpids").mkdir(exist_ok=True)
    for name, body in bodies.items():
        (tasks / f"{name}.sh").write_text(body.format(pids=tmp_path / "taskpids", name=name))
    return tasks


def sleeping_tasks(tmp_path: Path, count: int, seconds: float) -> Path:
    return make_tasks(tmp_path, {f"t{n}": SLEEPING_TASK.replace("{seconds}", str(seconds))
                                 for n in range(1, count + 1)})


def parse_banner(stdout: str) -> Daemon:
    pid = re.search(r"^Started parallelr daemon with PID (\d+)\b", stdout, re.M)
    main_log = re.search(r"^- Main Log: (\S+)$", stdout, re.M)
    summary = re.search(r"^- Summary: (\S+)$", stdout, re.M)
    assert pid and main_log and summary, stdout
    return Daemon(int(pid.group(1)), Path(main_log.group(1)), Path(summary.group(1)), stdout)


def start_daemon(janitor: Any, home: Path, tasks: Path, *extra: str) -> Tuple[Daemon, subprocess.Popen]:
    cli = janitor.popen(
        [sys.executable, "-m", "parallelr", "-T", str(tasks), "-C", "bash @TASK@", "-r", "-D", *extra],
        home, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(home),
    )
    began = time.monotonic()
    stdout, stderr = cli.communicate(timeout=10)
    print(f"parallelr -D returned after {time.monotonic() - began:.3f}s")
    assert cli.returncode == 0, stdout + stderr
    assert stderr == ""
    return parse_banner(stdout), cli












# -- start ---------------------------------------------------------------------------------------
def test_daemon_detaches_registers_and_unregisters_at_its_end(
    tmp_path: Path, home: Path, janitor: Any, wait_until: WaitUntil
) -> None:
    tasks = sleeping_tasks(tmp_path, 2, 2)
    daemon, cli = start_daemon(janitor, home, tasks)
    assert daemon.pid != cli.pid
    proc = psutil.Process(daemon.pid)
    assert proc.status() != psutil.STATUS_ZOMBIE
    assert proc.ppid() not in (cli.pid, psutil.Process().pid)

    # Double fork: a session of its own, but not its leader, so it can never get a terminal back.
    sid = os.getsid(daemon.pid)
    assert sid != os.getsid(0)
    assert sid != daemon.pid
    assert proc.terminal() is None
    for fd in (0, 1, 2):
        assert Path(f"/proc/{daemon.pid}/fd/{fd}").resolve() == Path("/dev/null")

    logs = home / "parallelr" / "logs"
    assert daemon.main_log.parent == logs
    assert re.fullmatch(rf"parallelr_{daemon.pid}_\w+\.log", daemon.main_log.name)
    assert daemon.summary_csv == logs / daemon.main_log.name.replace(".log", "_summary.csv")
    assert daemon.main_log.is_file() and daemon.summary_csv.is_file()
    assert registered_pids(home) == [daemon.pid]
    assert (home / "parallelr" / "pids" / f"{daemon.pid}.json").is_file()

    task_processes(tmp_path, wait_until, ["t1", "t2"])
    wait_ended(daemon.pid)
    assert registered_pids(home) == []
    assert not (home / "parallelr" / "pids" / f"{daemon.pid}.json").exists()
    rows = csv_rows(daemon.summary_csv)
    assert sorted(row["task_file"] for row in rows) == [str(tasks / "t1.sh"), str(tasks / "t2.sh")]
    assert [row["status"] for row in rows] == ["SUCCESS", "SUCCESS"]
    wait_until(lambda: janitor.survivors() == [], 10, "every process of the run to end")


def test_daemon_unregisters_when_stop_limits_halt_it(
    tmp_path: Path, home: Path, janitor: Any, wait_until: WaitUntil
) -> None:
    tasks = make_tasks(tmp_path, {f"f{n}": "exit 1\n" for n in range(1, 9)})
    daemon, _ = start_daemon(janitor, home, tasks, "-m", "1", "--enable-stop-limits")
    wait_ended(daemon.pid)
    assert daemon.pid not in registered_pids(home)
    statuses = [row["status"] for row in csv_rows(daemon.summary_csv)]
    assert statuses == ["FAILED"] * 5 + ["CANCELLED"] * 3
    assert "max_consecutive_failures" in daemon.main_log.read_text()
    wait_until(lambda: janitor.survivors() == [], 10, "every process of the run to end")


def test_sigterm_stops_a_daemon_which_accounts_for_every_task(
    tmp_path: Path, home: Path, janitor: Any, wait_until: WaitUntil
) -> None:
    tasks = sleeping_tasks(tmp_path, 4, 30)
    daemon, _ = start_daemon(janitor, home, tasks, "-m", "2")
    started = task_processes(tmp_path, wait_until, ["t1", "t2"])
    psutil.Process(daemon.pid).send_signal(15)
    wait_ended(daemon.pid)
    assert daemon.pid not in registered_pids(home)
    rows = csv_rows(daemon.summary_csv)
    assert len(rows) == 4
    assert [row["status"] for row in rows] == ["CANCELLED"] * 4
    by_task = {Path(row["task_file"]).stem: row for row in rows}
    assert sorted(by_task) == ["t1", "t2", "t3", "t4"]
    assert sorted(by_task[name]["worker_id"] for name in ("t1", "t2")) == ["1", "2"]
    assert [by_task[name]["worker_id"] for name in ("t3", "t4")] == ["", ""]
    assert "Run interrupted by SIGTERM" in daemon.main_log.read_text()
    wait_until(lambda: none_running(started), 10, "the task processes to end")
    wait_until(lambda: janitor.survivors() == [], 10, "every process of the run to end")


def test_a_daemon_that_cannot_start_says_why(tmp_path: Path, home: Path, janitor: Any) -> None:
    tasks = sleeping_tasks(tmp_path, 1, 1)
    (home / "parallelr").mkdir()
    (home / "parallelr" / "logs").write_text("a file where the log directory belongs")
    cli = janitor.popen(
        [sys.executable, "-m", "parallelr", "-T", str(tasks), "-C", "bash @TASK@", "-r", "-D"],
        home, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    stdout, stderr = cli.communicate(timeout=10)
    assert cli.returncode == 1
    assert "Started" not in stdout
    assert stderr.startswith("parallelr: error: the daemon could not start:"), stderr
    assert "logs" in stderr
    assert len(stderr.strip().splitlines()) == 1
    assert registered_pids(home) == []


def test_two_daemons_started_together_are_both_registered(
    tmp_path: Path, home: Path, janitor: Any, run_cli: Any, wait_until: WaitUntil
) -> None:
    tasks = sleeping_tasks(tmp_path, 1, 30)
    started: List[Daemon] = []
    errors: List[BaseException] = []

    def start() -> None:
        try:
            started.append(start_daemon(janitor, home, tasks)[0])
        except BaseException as exc:  # re-raised below: a thread's failure is otherwise lost
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    if errors:
        raise errors[0]
    pids = sorted(daemon.pid for daemon in started)
    assert len(set(pids)) == 2
    assert sorted(registered_pids(home)) == pids
    assert len({daemon.summary_csv for daemon in started}) == 2

    listing = run_cli(["--list-workers"], env=janitor.env)
    assert listing.returncode == 0
    rows = {int(parts[0]): parts for parts in map(str.split, listing.stdout.splitlines())
            if parts and parts[0].isdigit()}
    assert sorted(rows) == pids
    assert [rows[pid][1] for pid in pids] == ["daemon", "daemon"]
    for daemon in started:
        assert daemon.main_log.name in listing.stdout
        assert daemon.summary_csv.name in listing.stdout

    for daemon in started:
        killed = run_cli(["-k", str(daemon.pid)], env=janitor.env, timeout=30)
        assert killed.returncode == 0, killed.output
    for daemon in started:
        wait_ended(daemon.pid)
        assert [row["status"] for row in csv_rows(daemon.summary_csv)] == ["CANCELLED"]
    assert registered_pids(home) == []
    wait_until(lambda: janitor.survivors() == [], 10, "every process of the runs to end")
