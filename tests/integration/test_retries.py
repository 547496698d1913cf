"""--retries with backoff, as the journal and the reports record it: every attempt in the output log
and in the journal's history, one CSV row per task."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import List

FLAKY = """\
count=$(cat {counter} 2>/dev/null || echo 0)
count=$((count + 1))
echo $count > {counter}
python3 -c 'import time; print(time.time())' >> {times}
echo "attempt $count"
[ $count -ge 3 ]
"""


def attempts_in_journal(home: Path, source: str) -> List[tuple]:
    connection = sqlite3.connect(home / "parallelr" / "state.db")
    try:
        return connection.execute(
            "SELECT a.attempt, a.status, a.exit_code FROM attempts a JOIN jobs j ON j.id = a.job_id"
            " WHERE j.source = ? ORDER BY a.attempt",
            (source,),
        ).fetchall()
    finally:
        connection.close()


def test_fails_twice_then_succeeds_with_backoff(tmp_path, home, run_cli, run_files, summary) -> None:
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    flaky = tasks / "flaky.sh"
    flaky.write_text(FLAKY.format(counter=tmp_path / "counter", times=tmp_path / "times"))
    steady = tasks / "steady.sh"
    steady.write_text("echo steady\n")

    result = run_cli(["-T", str(tasks), "-C", "bash @TASK@", "-r", "--retries", "3", "--retry-delay", "0.5"])
    assert result.returncode == 0, result.output
    assert summary(result.stdout, "Total Tasks:") == "2"
    assert summary(result.stdout, "Completed Successfully:") == "2"

    starts = [float(line) for line in (tmp_path / "times").read_text().split()]
    assert len(starts) == 3
    # attempt 2 starts >= 0.5 s after attempt 1 ended; attempt 3 >= 1.0 s (backoff 2) after attempt 2
    assert starts[1] - starts[0] >= 0.5
    assert starts[2] - starts[1] >= 1.0

    files = run_files()
    rows = [row for row in files.rows if row["task_file"] == str(flaky)]
    assert len(files.rows) == 2
    assert len(rows) == 1
    assert rows[0]["status"] == "SUCCESS"
    assert rows[0]["exit_code"] == "0"
    assert files.output_log is not None
    log = files.output_log.read_text()
    assert log.count(f"Task: {flaky}\n") == 3
    assert log.count("Retry: attempt 2 in 0.5s") == 1
    assert log.count("Retry: attempt 3 in 1s") == 1
    assert "Attempt: 3\n" in log

    assert attempts_in_journal(home, str(flaky)) == [(1, "FAILED", 1), (2, "FAILED", 1), (3, "SUCCESS", 0)]
    assert attempts_in_journal(home, str(steady)) == [(1, "SUCCESS", 0)]


def test_a_task_out_of_retries_is_dead_with_every_attempt_recorded(tmp_path, home, run_cli) -> None:
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    broken = tasks / "broken.sh"
    broken.write_text("exit 4\n")
    result = run_cli(["-T", str(tasks), "-C", "bash @TASK@", "-r", "--retries", "2", "--retry-delay", "0.05"])
    assert result.returncode == 1, result.output
    assert attempts_in_journal(home, str(broken)) == [(1, "FAILED", 4), (2, "FAILED", 4), (3, "FAILED", 4)]
    shown = run_cli(["runs", "show", "last", "--state", "dead"])
    assert shown.returncode == 0, shown.output
    table = shown.stdout.split("\n\n", 1)[1].splitlines()
    assert table[0].split() == ["POS", "JOB", "STATE", "ATTEMPTS", "EXIT", "LAST", "ERROR", "TASK"]
    assert table[1].split() == ["1", "1", "dead", "3", "4", "Exit", "code", "4", str(broken)]
    assert len(table) == 2
