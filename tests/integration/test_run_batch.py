"""``parallelr.run_batch(RunRequest)``: batches run from a program, without the command line.

Real child processes, real files under a temporary HOME; two batches at once in one process,
one task of one of them cancelled while the rest of both runs go on.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any, Dict, List

import pytest
from conftest import cli_env

from parallelr import RunControl, RunRequest, run_batch
from parallelr.hookspecs import hookimpl
from parallelr.model import RunInfo, RunSummary, Task


def csv_rows(path: str) -> List[Dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter=";"))


def test_a_batch_runs_through_run_batch_without_the_command_line(tmp_path: Path, home: Path) -> None:
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    for name, code in (("a.sh", 0), ("b.sh", 0), ("c.sh", 3)):
        (tasks / name).write_text(f"echo {name}\nexit {code}\n")
    script = textwrap.dedent(f"""
        import json, sys
        from parallelr import RunRequest, run_batch
        summary = run_batch(RunRequest(task_paths=[{str(tasks)!r}], command="bash @TASK@", workers=2))
        assert "parallelr.cli" not in sys.modules, "the command line was used"
        print(json.dumps([summary.total, summary.succeeded, summary.failed, summary.exit_code]))
    """)

    done = subprocess.run([sys.executable, "-c", script], env=cli_env(home), capture_output=True, text=True,
                          timeout=60, cwd=str(tmp_path))

    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == "[3, 2, 1, 1]"
    (summary_csv,) = (home / "parallelr" / "logs").glob("*_summary.csv")
    rows = {Path(row["task_file"]).name: row for row in csv_rows(str(summary_csv))}
    assert {name: row["status"] for name, row in rows.items()} == {"a.sh": "SUCCESS", "b.sh": "SUCCESS",
                                                                  "c.sh": "FAILED"}
    assert rows["c.sh"]["exit_code"] == "3"


class CancelSecondTask:
    """A plugin object for one run: once task 2 has started, cancel it from another thread."""

    def __init__(self, control: RunControl) -> None:
        self.control = control

    @hookimpl
    def parallelr_task_start(self, run: RunInfo, task: Task, worker_id: int) -> None:
        if task.index == 2:
            threading.Timer(0.5, self.control.cancel_task, args=(2, "cancelled by the test")).start()


class Finished:
    def __init__(self) -> None:
        self.summary: Any = None
        self.run: Any = None

    @hookimpl
    def parallelr_run_finish(self, run: RunInfo, summary: RunSummary) -> None:
        self.run, self.summary = run, summary


def test_two_batches_at_once_in_one_process_and_one_task_of_one_cancelled(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(home))
    first = tmp_path / "first"
    second = tmp_path / "second"
    for folder, bodies in ((first, ["sleep 0.3", "echo $$ > long.pid; exec sleep 30", "sleep 0.3"]),
                           (second, ["sleep 0.2", "sleep 0.4", "sleep 0.2"])):
        folder.mkdir()
        for number, body in enumerate(bodies, start=1):
            (folder / f"t{number}.sh").write_text(body + "\n")
    control = RunControl()
    canceller = CancelSecondTask(control)
    results: Dict[str, Finished] = {"first": Finished(), "second": Finished()}
    errors: List[BaseException] = []

    def batch(name: str, folder: Path, plugins: List[Any], run_control: Any) -> None:
        try:
            run_batch(RunRequest(task_paths=[str(folder)], command="bash @TASK@", workers=3),
                      plugins=[*plugins, results[name]], control=run_control)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [
        threading.Thread(target=batch, args=("first", first, [canceller], control)),
        threading.Thread(target=batch, args=("second", second, [], None)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=25)
    assert not any(thread.is_alive() for thread in threads), "a batch did not end: the cancel was lost"
    assert errors == []

    one, two = results["first"], results["second"]
    assert (one.summary.total, one.summary.succeeded, one.summary.cancelled) == (3, 2, 1)
    assert one.summary.exit_code == 1
    assert (two.summary.total, two.summary.succeeded, two.summary.exit_code) == (3, 3, 0)
    assert one.run.run_id != two.run.run_id
    assert one.run.paths.summary_csv != two.run.paths.summary_csv
    rows_one = {Path(row["task_file"]).name: row for row in csv_rows(one.run.paths.summary_csv)}
    rows_two = {Path(row["task_file"]).name: row for row in csv_rows(two.run.paths.summary_csv)}
    assert {name: row["status"] for name, row in rows_one.items()} == {
        "t1.sh": "SUCCESS", "t2.sh": "CANCELLED", "t3.sh": "SUCCESS"}
    assert rows_one["t2.sh"]["error_message"] == "cancelled by the test"
    assert {row["status"] for row in rows_two.values()} == {"SUCCESS"}
    long_pid = int((home / "parallelr" / "workspace" / "long.pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(long_pid, 0)  # the cancelled task's process (its whole group) is gone
