"""Faults and hostile input around the journal: a database another process keeps locked, a partly
corrupt database, big arguments files that are stored while they run (resume after kill -9 or
Ctrl+C), and a bad line found while a big file already runs."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Dict, List, Tuple

LOCK = 8.0  # seconds the test holds the database: longer than the whole run


def database(home: Path) -> Path:
    return home / "parallelr" / "state.db"


def marker_counts(marks: Path) -> Tuple[Counter, Counter]:
    """How often each task started and ended, from the lines ``N start`` / ``N end``."""
    starts: Counter = Counter()
    ends: Counter = Counter()
    for line in (marks.read_text().splitlines() if marks.exists() else []):
        number, event = line.split()
        (starts if event == "start" else ends)[int(number)] += 1
    return starts, ends


def runs(run_cli) -> List[Dict]:
    listed = run_cli(["runs", "list", "--json"])
    assert listed.returncode == 0, listed.output
    return json.loads(listed.stdout)


def one_line_error(result) -> str:
    assert "Traceback" not in result.output, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.output
    return lines[0]


# -- 1. a database locked by another process for a while ----------------------------------------
def write_sleepers(tmp_path: Path, count: int, marks: Path) -> Path:
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    for number in range(1, count + 1):
        (tasks / f"t{number:02d}.sh").write_text(
            f'echo "{number} start" >> {marks}\nsleep 1\necho "{number} end" >> {marks}\n'
        )
    return tasks


def test_a_journal_locked_for_a_while_loses_no_result(tmp_path, home, janitor, wait_until, run_cli) -> None:
    """12 tasks of a second each run while another process holds the database in an exclusive
    transaction for longer than the run: the results wait in the writer and are written once the
    lock is gone, the run's end too, so --resume has nothing to run again."""
    marks = tmp_path / "marks"
    tasks = write_sleepers(tmp_path, 12, marks)
    argv = [sys.executable, "-m", "parallelr", "-T", str(tasks), "-C", "bash @TASK@", "-r", "-m", "4"]
    out = tmp_path / "out"
    runner = janitor.popen(argv, home, stdout=open(out, "w"), stderr=subprocess_stderr(tmp_path),
                           env={"PARALLELR_JOURNAL_BUSY_TIMEOUT": "0.5"})
    wait_until(lambda: marks.exists(), 30, "the first task to start")
    holder = sqlite3.connect(database(home), timeout=30, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        time.sleep(LOCK)  # the run's tasks all end meanwhile
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert runner.wait(120) == 0, out.read_text()
    assert "cannot record" in out.read_text()  # it said that it waited
    (run,) = runs(run_cli)
    assert run["state"] == "finished"
    assert run["counts"] == {"tasks": 12, "succeeded": 12, "failed": 0, "cancelled": 0, "pending": 0}

    resumed = run_cli(["--resume", "last", "-r"])
    assert resumed.returncode == 0, resumed.output
    assert ": 0 task(s) to run again" in resumed.stdout
    starts, ends = marker_counts(marks)
    assert starts == ends == Counter({number: 1 for number in range(1, 13)})  # none ran twice


def subprocess_stderr(tmp_path: Path):
    return open(tmp_path / "err", "w")


def test_a_journal_that_stays_locked_fails_the_run(tmp_path, home, janitor, wait_until) -> None:
    """Results that are still not written when the run ends: the run says so and exits 1."""
    marks = tmp_path / "marks"
    tasks = write_sleepers(tmp_path, 2, marks)
    argv = [sys.executable, "-m", "parallelr", "-T", str(tasks), "-C", "bash @TASK@", "-r", "-m", "2"]
    out = tmp_path / "out"
    quick = {"PARALLELR_JOURNAL_BUSY_TIMEOUT": "0.2", "PARALLELR_JOURNAL_FLUSH_TIMEOUT": "1"}
    runner = janitor.popen(argv, home, stdout=open(out, "w"), stderr=subprocess_stderr(tmp_path), env=quick)
    wait_until(lambda: marks.exists(), 30, "the first task to start")
    holder = sqlite3.connect(database(home), timeout=30, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        code = runner.wait(60)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    text = out.read_text()
    assert code == 1, text  # every task succeeded, but the journal does not know it
    assert "cannot record" in text and "database is locked" in text
    assert "Traceback" not in text + (tmp_path / "err").read_text()


# -- 2. a partly corrupt database ------------------------------------------------------------------
def test_a_partly_corrupt_journal_is_one_line_for_every_command(tmp_path, home, run_cli) -> None:
    arguments = tmp_path / "hosts.txt"
    arguments.write_text("".join(f"host{n}\n" for n in range(300)))
    first = run_cli(["-A", str(arguments), "-C", "sh -c 'exit 1' @ARG@", "-r", "-m", "8"])
    assert first.returncode == 1, first.output  # every task failed: dead letters to list
    path = database(home)
    assert not Path(f"{path}-wal").exists() or Path(f"{path}-wal").stat().st_size == 0
    size = path.stat().st_size
    assert size > 8 * 4096
    with open(path, "r+b") as handle:  # the header page stays: the file still opens as SQLite
        handle.seek(4096)
        handle.write(b"\xde\xad\xbe\xef" * ((size - 4096) // 4))

    for args in (["runs", "list"], ["runs", "show", "last"], ["dlq", "list"], ["dlq", "retry", "--all"],
                 ["--resume", "last", "-r"]):
        result = run_cli(args)
        assert result.returncode == 1, (args, result.output)
        line = one_line_error(result)
        assert line.startswith(f"parallelr: error: cannot use the journal {path}: "), (args, line)
        assert "malformed" in line or "not a database" in line, (args, line)


# -- 3. a big arguments file is stored while it runs -----------------------------------------------
TASK = """\
echo "$1 start" >> {marks}
if [ "$1" -le {quick} ] || [ -e {fast} ]; then sleep 0.05; else sleep 30; fi
echo "$1 end" >> {marks}
"""


def big_run(tmp_path: Path, lines: int, quick: int) -> Tuple[Path, Path, Path, Path]:
    marks, fast = tmp_path / "marks", tmp_path / "fast"
    template = tmp_path / "task.sh"
    template.write_text(TASK.format(marks=marks, quick=quick, fast=fast))
    arguments = tmp_path / "args.txt"
    arguments.write_text("".join(f"{n}\n" for n in range(1, lines + 1)))
    return template, arguments, marks, fast


# Jobs are stored 5 ahead of the run instead of 10,000, so that a small file behaves like a big one.
SMALL_AHEAD = {"PARALLELR_JOURNAL_PLAN_AHEAD": "5"}


def test_resume_after_kill_9_runs_exactly_what_did_not_succeed(tmp_path, home, janitor, wait_until,
                                                              run_cli, summary) -> None:
    template, arguments, marks, fast = big_run(tmp_path, 60, quick=20)
    argv = [sys.executable, "-m", "parallelr", "-T", str(template), "-A", str(arguments), "-C",
            "bash @TASK@ @ARG@", "-r", "-m", "3"]
    runner = janitor.popen(argv, home, stdout=open(tmp_path / "out", "w"), stderr=subprocess_stderr(tmp_path),
                           env=SMALL_AHEAD, cwd=str(tmp_path))

    def hanging() -> bool:
        starts, ends = marker_counts(marks)
        return all(ends[n] == 1 for n in range(1, 21)) and all(starts[n] == 1 for n in (21, 22, 23))

    wait_until(hanging, 60, "tasks 1-20 to finish and 21-23 to hang")
    time.sleep(0.3)  # the writer commits what it has
    os.kill(runner.pid, signal.SIGKILL)
    runner.wait(10)
    (run,) = runs(run_cli)
    assert run["state"] == "crashed"
    assert run["counts"] == {"tasks": 60, "succeeded": 20, "failed": 0, "cancelled": 0, "pending": 40}
    assert sum(run["states"].values()) < 60  # the run did not store all its jobs: they never started
    shown = run_cli(["runs", "show", "last"])
    assert "never started, not stored one by one" in shown.stdout, shown.output

    # The never-stored tasks are read from the file again: a changed file is refused, in one line.
    original, stat = arguments.read_bytes(), arguments.stat()
    arguments.write_bytes(original.replace(b"\n45\n", b"\n45b\n"))
    elsewhere = tmp_path / "elsewhere"  # the resume runs in another working directory
    elsewhere.mkdir()
    changed = run_cli(["--resume", "last", "-r"], cwd=elsewhere)
    assert changed.returncode == 1, changed.output
    assert "changed since the run started" in one_line_error(changed)
    arguments.write_bytes(original)
    os.utime(arguments, ns=(stat.st_atime_ns, stat.st_mtime_ns))

    fast.touch()
    resumed = run_cli(["--resume", "last", "-r", "-m", "4"], cwd=elsewhere)
    assert resumed.returncode == 0, resumed.output
    assert ": 40 task(s) to run again" in resumed.stdout
    assert summary(resumed.stdout, "Total Tasks:") == "60"
    assert summary(resumed.stdout, "Completed Successfully:") == "60"
    starts, ends = marker_counts(marks)
    assert ends == Counter({n: 1 for n in range(1, 61)})  # every task succeeded once, none twice
    assert {n for n, count in starts.items() if count > 1} == {21, 22, 23}  # the killed ones, again
    (run,) = runs(run_cli)
    assert (run["state"], run["states"]) == ("finished", {"succeeded": 60})


def test_ctrl_c_of_a_big_run_records_the_rest_and_resume_runs_it(tmp_path, home, janitor, wait_until,
                                                                 run_cli, summary) -> None:
    count = 3000
    template, arguments, marks, fast = big_run(tmp_path, count, quick=6)
    argv = [sys.executable, "-m", "parallelr", "-T", str(template), "-A", str(arguments), "-C",
            "bash @TASK@ @ARG@", "-r", "-m", "2"]
    runner = janitor.popen(argv, home, stdout=open(tmp_path / "out", "w"), stderr=subprocess_stderr(tmp_path),
                           env=SMALL_AHEAD)
    wait_until(lambda: marker_counts(marks)[0][8] == 1, 60, "tasks 7 and 8 to hang")
    runner.send_signal(signal.SIGINT)
    assert runner.wait(60) == 130
    (run,) = runs(run_cli)
    assert run["state"] == "interrupted"
    expected = {"tasks": count, "succeeded": 6, "failed": 0, "cancelled": count - 6, "pending": 0}
    assert run["counts"] == expected
    assert run["states"]["cancelled"] < 20  # the stored ones; the rest never had a job

    fast.touch()
    resumed = run_cli(["--resume", "last", "-r", "-m", "8"])
    assert resumed.returncode == 0, resumed.output
    assert f": {count - 6} task(s) to run again" in resumed.stdout
    assert summary(resumed.stdout, "Completed Successfully:") == str(count)
    starts, ends = marker_counts(marks)
    assert ends == Counter({n: 1 for n in range(1, count + 1)})
    assert {n for n, times in starts.items() if times > 1} == {7, 8}


# -- 4. a bad line that only the background check finds -------------------------------------------
def test_a_bad_line_found_while_a_big_file_runs_stops_the_run(tmp_path, run_cli) -> None:
    """A file too big to check before the first task: the check goes on while tasks run, and the
    bad line at its end stops the run (no new task starts) with one error line."""
    marks = tmp_path / "marks"
    arguments = tmp_path / "args.txt"
    with open(arguments, "wb") as handle:
        for start in range(0, 1_000_000, 100_000):
            handle.write(b"".join(b"%d\n" % n for n in range(start + 1, start + 100_001)))
        handle.write(b"bad\x00line\n")
    result = run_cli(["-A", str(arguments), "-C", f"sh -c 'echo $0 >> {marks}; sleep 0.5' @ARG@", "-r", "-m",
                      "2"], timeout=300)
    assert result.returncode == 1, result.output
    assert "Created 1000001 tasks" in result.stdout
    errors = [message for level, message in result.console if level == "ERROR"]
    assert len(errors) == 1 and "line 1000001" in errors[0] and "null byte" in errors[0], result.output
    assert "Traceback" not in result.output
    ran = len(marks.read_text().splitlines()) if marks.exists() else 0
    assert 1 <= ran < 1000  # it started before the check was done, and stopped when it was
