"""--list-workers and -k: list and stop this user's verified runs, and refuse anything else."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Dict, Iterator, List

import psutil
import pytest
from ops_support import SLEEPING_TASK, WaitUntil, none_running, registered_pids, task_processes, wait_ended
from ops_support import read_csv as csv_rows

HEADER = re.compile(r"^PID\s+Status\s+Start Time\s+Log File\s+Summary File\b", re.M)

# Records every catchable signal it gets: proof that -k sent nothing at all.
SIGNAL_RECORDER = """
import signal, sys
from pathlib import Path
record = Path(sys.argv[1])
def note(signum, frame):
    with record.open("a") as handle:
        handle.write(f"{signum}\\n")
for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
               signal.SIGUSR2, signal.SIGCONT):
    signal.signal(signum, note)
record.touch()
while True:
    signal.pause()
"""


def make_tasks(tmp_path: Path, count: int, seconds: float) -> Path:
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    pids = tmp_path / "taskpids"
    pids.mkdir()
    for n in range(1, count + 1):
        body = SLEEPING_TASK.format(pids=pids, name=f"t{n}", seconds=seconds)
        (tasks / f"t{n}.sh").write_text(body)
    return tasks


def pid_file(home: Path) -> Path:
    return home / "parallelr" / "pids" / "parallelr.pids"












def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def start_daemon(run_cli: Any, janitor: Any, tasks: Path, *extra: str) -> Dict[str, Any]:
    result = run_cli(["-T", str(tasks), "-C", "bash @TASK@", "-r", "-D", *extra], env=janitor.env, timeout=10)
    assert result.returncode == 0, result.output
    pid = int(re.search(r"daemon with PID (\d+)", result.stdout).group(1))
    summary = Path(re.search(r"^- Summary: (\S+)$", result.stdout, re.M).group(1))
    return {"pid": pid, "summary": summary}


def write_entry(home: Path, proc: psutil.Process, create_time: float) -> None:
    """Register ``proc`` as if it were a parallelr run (the json the registry reads)."""
    folder = home / "parallelr" / "pids"
    folder.mkdir(parents=True, exist_ok=True)
    with pid_file(home).open("a") as handle:
        handle.write(f"{proc.pid}\n")
    entry = {
        "pid": proc.pid, "create_time": create_time, "uid": os.getuid(), "app_name": "parallelr",
        "started_at": proc.create_time(), "main_log": str(home / "x.log"),
        "summary_csv": str(home / "x_summary.csv"), "output_log": None, "run_id": None, "daemon": True,
    }
    (folder / f"{proc.pid}.json").write_text(json.dumps(entry))


@pytest.fixture
def recorder(tmp_path: Path, wait_until: WaitUntil) -> Iterator[Dict[str, Any]]:
    """A process of the test's own that is not a parallelr run and notes every signal it gets."""
    record = tmp_path / "signals.txt"
    proc = subprocess.Popen([sys.executable, "-c", SIGNAL_RECORDER, str(record)])
    try:
        wait_until(record.exists, 10, "the signal recorder to start")
        yield {"proc": proc, "record": record}
    finally:
        proc.kill()
        proc.wait(timeout=10)


# -- --list-workers -------------------------------------------------------------------------------
def test_list_workers_without_runs(run_cli: Any) -> None:
    result = run_cli(["--list-workers"])
    assert result.returncode == 0
    assert "No running" in result.stdout
    assert not HEADER.search(result.stdout)


def test_list_workers_shows_a_foreground_run_until_it_ends(
    tmp_path: Path, home: Path, janitor: Any, run_cli: Any, wait_until: WaitUntil
) -> None:
    tasks = make_tasks(tmp_path, 1, 3)
    with (tmp_path / "run.out").open("w") as out:
        run = janitor.popen([sys.executable, "-m", "parallelr", "-T", str(tasks), "-C", "bash @TASK@", "-r"],
                            home, stdout=out, stderr=subprocess.STDOUT)
    task_processes(tmp_path, wait_until, ["t1"])
    listing = run_cli(["--list-workers"], env=janitor.env)
    assert listing.returncode == 0
    assert HEADER.search(listing.stdout), listing.stdout
    rows = [line.split() for line in listing.stdout.splitlines() if line.split()[:1] == [str(run.pid)]]
    assert len(rows) == 1, listing.stdout
    row = rows[0]
    assert row[1] == "running"
    logs = sorted(path.name for path in (home / "parallelr" / "logs").iterdir())
    main_log = next(name for name in logs if name.endswith(".log"))
    summary = next(name for name in logs if name.endswith("_summary.csv"))
    assert main_log.startswith(f"parallelr_{run.pid}_") and main_log in row
    assert summary in row

    assert run.wait(timeout=20) == 0
    assert registered_pids(home) == []
    after = run_cli(["--list-workers"], env=janitor.env)
    assert "No running" in after.stdout


def test_a_stale_entry_is_pruned_and_never_acted_on(tmp_path: Path, home: Path, run_cli: Any) -> None:
    gone = subprocess.Popen(["sleep", "60"])
    proc = psutil.Process(gone.pid)
    create_time = proc.create_time()
    gone.kill()
    gone.wait(timeout=10)
    write_entry(home, proc, create_time)

    killed = run_cli(["-k", str(gone.pid)])
    assert killed.returncode == 1
    assert f"{gone.pid} is not a running parallelr process" in killed.stderr
    listing = run_cli(["--list-workers"])
    assert "No running" in listing.stdout
    assert registered_pids(home) == []
    assert not (home / "parallelr" / "pids" / f"{gone.pid}.json").exists()


def test_a_reused_pid_is_neither_listed_nor_killed(
    home: Path, run_cli: Any, recorder: Dict[str, Any]
) -> None:
    stranger = psutil.Process(recorder["proc"].pid)
    write_entry(home, stranger, stranger.create_time() - 50)  # the PID was a parallelr run long ago

    listing = run_cli(["--list-workers"])
    assert listing.returncode == 0
    assert "No running" in listing.stdout
    write_entry(home, stranger, stranger.create_time() - 50)  # the listing pruned it: file it again

    killed = run_cli(["-k", str(stranger.pid)])
    assert killed.returncode == 1
    assert killed.stderr.strip() == (
        f"parallelr: error: {stranger.pid} is not a running parallelr process of this user "
        "(see --list-workers); nothing was signalled"
    )
    assert recorder["proc"].poll() is None
    assert recorder["record"].read_text() == ""
    assert registered_pids(home) == []


def test_a_sleep_that_is_not_ours_survives_kill(home: Path, run_cli: Any, janitor: Any) -> None:
    sleeper = janitor.popen(["sleep", "60"], home)
    write_entry(home, psutil.Process(sleeper.pid), psutil.Process(sleeper.pid).create_time() + 7)
    listing = run_cli(["--list-workers"])
    assert str(sleeper.pid) not in listing.stdout
    write_entry(home, psutil.Process(sleeper.pid), psutil.Process(sleeper.pid).create_time() + 7)
    killed = run_cli(["-k", str(sleeper.pid)])
    assert killed.returncode == 1
    assert "not a running parallelr process" in killed.stderr
    assert "nothing was signalled" in killed.stderr
    assert sleeper.poll() is None


# -- -k PID ---------------------------------------------------------------------------------------
def test_kill_pid_stops_a_daemon_and_its_tasks(
    tmp_path: Path, home: Path, janitor: Any, run_cli: Any, wait_until: WaitUntil
) -> None:
    tasks = make_tasks(tmp_path, 4, 30)
    daemon = start_daemon(run_cli, janitor, tasks, "-m", "2")
    started = task_processes(tmp_path, wait_until, ["t1", "t2"])
    assert len(started) == 4

    result = run_cli(["-k", str(daemon["pid"])], env=janitor.env, timeout=30)
    assert result.returncode == 0, result.output
    assert str(daemon["pid"]) in result.stdout
    wait_ended(daemon["pid"])
    rows = csv_rows(daemon["summary"])
    assert sorted(row["task_file"] for row in rows) == [str(tasks / f"t{n}.sh") for n in range(1, 5)]
    assert {row["status"] for row in rows} <= {"SUCCESS", "CANCELLED"}
    wait_until(lambda: none_running(started), 10, "the task processes to end")
    assert registered_pids(home) == []
    assert "No running" in run_cli(["--list-workers"]).stdout
    wait_until(lambda: janitor.survivors() == [], 10, "every process of the run to end")


def test_kill_pid_escalates_when_tasks_ignore_sigterm(
    tmp_path: Path, home: Path, janitor: Any, run_cli: Any, wait_until: WaitUntil, user_config: Any
) -> None:
    # The run's own grace is long, so only -k's SIGKILL after its 3 s wait can end these tasks in time.
    user_config("execution:\n  kill_grace_seconds: 60\n")
    tasks = tmp_path / "tasks"
    make_tasks(tmp_path, 2, 30)
    for script in tasks.iterdir():
        script.write_text("trap '' TERM\n" + script.read_text())
    daemon = start_daemon(run_cli, janitor, tasks, "-m", "2")
    started = task_processes(tmp_path, wait_until, ["t1", "t2"])

    result = run_cli(["-k", str(daemon["pid"])], env=janitor.env, timeout=30)
    assert result.returncode == 0, result.output
    wait_ended(daemon["pid"])
    wait_until(lambda: none_running(started), 10, "the task processes to end")
    rows = csv_rows(daemon["summary"])
    assert sorted(Path(row["task_file"]).name for row in rows) == ["t1.sh", "t2.sh"]
    assert [row["status"] for row in rows] == ["CANCELLED", "CANCELLED"]
    assert registered_pids(home) == []


def test_kill_pid_stops_a_foreground_run(
    tmp_path: Path, home: Path, janitor: Any, run_cli: Any, wait_until: WaitUntil
) -> None:
    tasks = make_tasks(tmp_path, 3, 30)
    with (tmp_path / "run.out").open("w") as out:
        run = janitor.popen(
            [sys.executable, "-m", "parallelr", "-T", str(tasks), "-C", "bash @TASK@", "-r", "-m", "2"],
            home, stdout=out, stderr=subprocess.STDOUT,
        )
    started = task_processes(tmp_path, wait_until, ["t1", "t2"])
    result = run_cli(["-k", str(run.pid)], env=janitor.env, timeout=30)
    assert result.returncode == 0, result.output
    assert run.wait(timeout=15) == 128 + signal.SIGTERM
    summary = next((home / "parallelr" / "logs").glob("*_summary.csv"))
    assert [row["status"] for row in csv_rows(summary)] == ["CANCELLED"] * 3
    wait_until(lambda: none_running(started), 10, "the task processes to end")
    assert registered_pids(home) == []


def test_kill_of_an_unknown_pid_is_refused(run_cli: Any) -> None:
    result = run_cli(["-k", "999999999"])
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "parallelr: error: 999999999 is not a running parallelr process of this user "
        "(see --list-workers); nothing was signalled"
    )


def test_kill_of_pid_1_is_refused(run_cli: Any) -> None:
    result = run_cli(["-k", "1"])
    assert result.returncode == 1
    assert "1 is not a running parallelr process" in result.stderr
    assert psutil.pid_exists(1)


def test_kill_needs_a_number(run_cli: Any) -> None:
    result = run_cli(["-k", "abc"])
    assert result.returncode == 2
    assert result.stderr.startswith("parallelr: error: ")
    assert "abc" in result.stderr and "Traceback" not in result.stderr


# -- plain -k -------------------------------------------------------------------------------------
def test_kill_all_without_runs_asks_nothing(run_cli: Any) -> None:
    result = run_cli(["-k"], input="yes\n")
    assert result.returncode == 0
    assert "No running" in result.stdout
    assert "Are you sure" not in result.stdout


def test_kill_all_asks_and_stops_only_on_yes(
    tmp_path: Path, home: Path, janitor: Any, run_cli: Any, wait_until: WaitUntil
) -> None:
    tasks = make_tasks(tmp_path, 2, 30)
    daemons: List[Dict[str, Any]] = []

    def start() -> None:
        daemons.append(start_daemon(run_cli, janitor, tasks, "-m", "1"))

    threads = [threading.Thread(target=start) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(daemons) == 2
    pids = sorted(daemon["pid"] for daemon in daemons)
    wait_until(lambda: sorted(registered_pids(home)) == pids, 10, "both daemons to register")

    declined = run_cli(["-k"], env=janitor.env, input="no\n")
    assert "Are you sure? Type 'yes' to confirm:" in declined.stdout
    assert declined.returncode == 1
    assert all(alive(pid) for pid in pids)
    assert sorted(registered_pids(home)) == pids

    confirmed = run_cli(["-k"], env=janitor.env, input="yes\n", timeout=60)
    assert confirmed.returncode == 0, confirmed.output
    assert "Are you sure? Type 'yes' to confirm:" in confirmed.stdout
    for pid in pids:
        wait_ended(pid)
    assert registered_pids(home) == []
    for daemon in daemons:
        assert [row["status"] for row in csv_rows(daemon["summary"])] == ["CANCELLED", "CANCELLED"]
    wait_until(lambda: janitor.survivors() == [], 10, "every process of the runs to end")
