"""--resume after a kill -9 of the runner: every task runs, none that succeeded runs twice, and the
task processes the dead runner left behind are terminated first. The kill -9 test runs with the
journal in both stores: the default SQLite file and a PostgreSQL database (``journal.path``)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import psutil
import pytest
from store_support import StoreTarget

COUNT = 10
QUICK = 4  # t01..t04 finish at once; t05.. hang (until the "fast" flag exists) so the kill catches them

TASK = """\
echo "{name} start" >> {markers}
echo $$ > {pids}/{name}.pid
if [ {number} -le {quick} ] || [ -e {fast} ]; then sleep 0.2; else sleep 30; fi
echo "{name} end" >> {markers}
"""


def make_tasks(tmp_path: Path) -> Path:
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tmp_path / "pids").mkdir()
    for number in range(1, COUNT + 1):
        name = f"t{number:02d}"
        (tasks / f"{name}.sh").write_text(TASK.format(
            name=name, number=number, quick=QUICK, markers=tmp_path / "markers", pids=tmp_path / "pids",
            fast=tmp_path / "fast",
        ))
    return tasks


def markers(tmp_path: Path) -> Dict[str, List[str]]:
    """{task name: ["start", "end", ...]} in the order they were written."""
    found: Dict[str, List[str]] = {}
    path = tmp_path / "markers"
    for line in (path.read_text().splitlines() if path.exists() else []):
        name, event = line.split()
        found.setdefault(name, []).append(event)
    return found


def job_states(home: Path) -> Dict[int, str]:
    path = home / "parallelr" / "state.db"
    if not path.exists():
        return {}
    connection = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        return dict(connection.execute("SELECT position, state FROM jobs").fetchall())
    except sqlite3.Error:
        return {}
    finally:
        connection.close()


@pytest.fixture
def journal_states(
    store_target: StoreTarget, home: Path, user_config: Any
) -> Iterator[Callable[[], Dict[int, str]]]:
    """The journal in this test's store kind (PostgreSQL through ``journal.path``); reads its jobs' states."""
    if not store_target.is_postgres:
        yield lambda: job_states(home)
        return
    user_config(f"journal:\n  path: {store_target.location}\n")

    def states() -> Dict[int, str]:
        try:
            return dict(store_target.sql("SELECT position, state FROM jobs"))
        except Exception:  # not created yet
            return {}

    yield states
    assert not (home / "parallelr" / "state.db").exists()  # the runs were in PostgreSQL only
    assert len(store_target.sql("SELECT id FROM runs")) == 1


def test_kill_9_then_resume_last(
    tmp_path, home, janitor, wait_until, run_cli, summary, journal_states
) -> None:
    tasks = make_tasks(tmp_path)
    runner = janitor.popen(
        [sys.executable, "-m", "parallelr", "-T", str(tasks), "-C", "bash @TASK@", "-r", "-m", "2"], home,
        stdout=open(tmp_path / "first.out", "w"), stderr=open(tmp_path / "first.err", "w"), cwd=str(tmp_path),
    )

    def hanging() -> bool:
        seen = markers(tmp_path)
        return all(seen.get(f"t{n:02d}") == ["start", "end"] for n in range(1, QUICK + 1)) and all(
            seen.get(name) == ["start"] for name in ("t05", "t06")
        )

    wait_until(hanging, 30, "t01-t04 to finish and t05, t06 to hang")
    # The finished tasks are on disk promptly, while the runner still runs (no flush at exit needed).
    wait_until(lambda: [journal_states().get(n) for n in range(1, 7)] == ["succeeded"] * 4 + ["running"] * 2,
               10, "the journal to show t01-t04 succeeded and t05, t06 running")
    os.kill(runner.pid, signal.SIGKILL)
    runner.wait(10)
    leftovers = [int((tmp_path / "pids" / f"{name}.pid").read_text()) for name in ("t05", "t06")]
    assert all(psutil.pid_exists(pid) for pid in leftovers)  # tasks outlive a SIGKILLed runner

    listed = run_cli(["runs", "list", "--json"])
    assert listed.returncode == 0, listed.output
    (run,) = json.loads(listed.stdout)
    run_id = run["id"]
    assert run["state"] == "crashed"
    assert run["counts"] == {"tasks": 10, "succeeded": 4, "failed": 0, "cancelled": 0, "pending": 6}
    assert run["states"] == {"succeeded": 4, "running": 2, "pending": 4}

    (tmp_path / "fast").touch()
    resumed = run_cli(["--resume", "last", "-r", "-m", "3"])
    assert resumed.returncode == 0, resumed.output
    assert f"Resuming run {run_id}: 6 task(s) to run again" in resumed.stdout
    terminated = f"Terminated 2 leftover task(s) of run {run_id} (4 process(es); its runner is gone)"
    assert terminated in resumed.stdout
    assert summary(resumed.stdout, "Run ID:") == run_id
    assert summary(resumed.stdout, "Total Tasks:") == "10"
    assert summary(resumed.stdout, "Completed Successfully:") == "10"
    assert summary(resumed.stdout, "Failed:") == "0"

    seen = markers(tmp_path)
    assert sorted(seen) == [f"t{n:02d}" for n in range(1, COUNT + 1)]
    for number in range(1, COUNT + 1):
        name = f"t{number:02d}"
        assert seen[name].count("end") == 1, (name, seen[name])
    for name in ("t01", "t02", "t03", "t04"):  # finished before the kill: not started again
        assert seen[name] == ["start", "end"]
    for name in ("t05", "t06"):  # killed while running (no "end"), then run again
        assert seen[name] == ["start", "start", "end"]
    for pid in leftovers:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE

    shown = run_cli(["runs", "show", "last"])
    assert shown.returncode == 0, shown.output
    assert "State:      finished" in shown.stdout
    assert "Tasks:      10 (succeeded 10, failed 0, cancelled 0, pending 0)" in shown.stdout
    assert "Resumed:    1 time(s)" in shown.stdout
    table = shown.stdout.split("\n\n", 1)[1].splitlines()
    attempts = {int(line.split()[0]): int(line.split()[3]) for line in table[1:]}
    assert attempts == {1: 1, 2: 1, 3: 1, 4: 1, 5: 2, 6: 2, 7: 1, 8: 1, 9: 1, 10: 1}


def test_resume_dry_run_lists_what_did_not_succeed(tmp_path, run_cli) -> None:
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    for name, code in (("a", 0), ("b", 1), ("c", 0), ("d", 2)):
        (tasks / f"{name}.sh").write_text(f"exit {code}\n")
    first = run_cli(["-T", str(tasks), "-C", "bash @TASK@", "-r"])
    assert first.returncode == 1, first.output

    dry = run_cli(["--resume", "last"])
    assert dry.returncode == 0, dry.output
    assert dry.console == [
        ("INFO", "Starting parallel execution"), ("INFO", "Executing 2 tasks with 20 workers"),
    ]
    lines = dry.plain_lines
    assert lines[0].startswith("Resuming run ") and lines[0].endswith(": 2 task(s) to run again")
    assert lines[1:] == [
        "DRY RUN MODE - nothing is executed; add -r to run these commands:",
        f"bash {tasks / 'b.sh'}",
        f"bash {tasks / 'd.sh'}",
        "2 task(s) would run.",
    ]
    (run,) = json.loads(run_cli(["runs", "list", "--json"]).stdout)
    # a dry run changes nothing
    assert (run["state"], run["states"]) == ("finished", {"succeeded": 2, "dead": 2})


def test_resume_errors(tmp_path, home, run_cli) -> None:
    none_yet = run_cli(["--resume", "last", "-r"])
    assert none_yet.returncode == 2
    journal = home / "parallelr" / "state.db"
    assert none_yet.stderr == (
        f"parallelr: error: --resume: no run has been recorded yet (no journal at {journal})\n"
    )
    assert not (home / "parallelr" / "state.db").exists()

    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "a.sh").write_text("true\n")
    assert run_cli(["-T", str(tasks), "-C", "bash @TASK@", "-r"]).returncode == 0

    unknown = run_cli(["--resume", "20000101-000000-abcdef", "-r"])
    assert unknown.returncode == 2
    assert "unknown run '20000101-000000-abcdef'" in unknown.stderr
    assert "runs list" in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1

    both = run_cli(["--resume", "last", "-r", "--no-journal"])
    assert both.returncode == 2
    assert "--resume reads the journal: it cannot be combined with --no-journal" in both.stderr

    again = run_cli(["--resume", "last", "-r", "-T", str(tasks)])
    assert again.returncode == 2
    assert "--resume runs the tasks stored for the run; drop -T/--TasksDir" in again.stderr

    only = run_cli(["-T", str(tasks), "-C", "bash @TASK@", "--resume-only", "1"])
    assert only.returncode == 2
    assert "--resume-only needs --resume RUN_ID" in only.stderr

    nothing_left = run_cli(["--resume", "last", "-r"])
    assert nothing_left.returncode == 0, nothing_left.output
    assert ": 0 task(s) to run again" in nothing_left.stdout
