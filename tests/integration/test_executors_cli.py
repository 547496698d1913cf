"""Execution control through the real CLI: --executor, -m, -t, -s, --enable-stop-limits, and that a
timed-out task leaves no process behind.

Spec: parallelr-README.md "Execution Control", "Auto-Stop Protection", "use_process_groups";
COMPAT.md "Exit status".
"""

from __future__ import annotations

import datetime
import os
import re
from pathlib import Path
from typing import List, Tuple

import pytest

EXECUTORS = ("thread", "process")


def write_tasks(directory: Path, bodies: dict) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, body in bodies.items():
        (directory / name).write_text(body, encoding="utf-8")


def row_key(rows: List[dict]) -> List[Tuple[str, str, str]]:
    return sorted((row["task_file"], row["status"], row["exit_code"]) for row in rows)


# -- executors -----------------------------------------------------------------------------------

MIXED_LINES = (
    "bash|-c|exit 0\n"
    "bash|-c|exit 3\n"
    "bash|-c|sleep 5\n"
    "no-such-program-4711|-c|x\n"
    "bash|-c|kill -9 $$\n"
)


@pytest.fixture
def mixed_arguments(tmp_path: Path) -> Path:
    path = tmp_path / "mixed.txt"
    path.write_text(MIXED_LINES, encoding="utf-8")
    return path


def test_thread_and_process_executors_give_identical_results(run_cli, run_files, home, mixed_arguments):
    argv = ["-A", str(mixed_arguments), "-S", "pipe", "-C", "@ARG_1@ @ARG_2@ @ARG_3@", "-r", "-t", "1"]
    outcomes = {}
    for executor in EXECUTORS:
        result = run_cli([*argv, "--executor", executor])
        files = run_files()
        outcomes[executor] = (result.returncode, row_key(files.rows))
        rows = {row["task_file"]: row for row in files.rows}
        missing = rows[f"{mixed_arguments}:4"]
        assert "not found" in missing["error_message"], missing
        assert rows[f"{mixed_arguments}:3"]["error_message"] == "Timeout after 1s"
        for path in (home / "parallelr" / "logs").iterdir():  # the next run must find only its own files
            path.unlink()

    expected = [
        (f"{mixed_arguments}:1", "SUCCESS", "0"),
        (f"{mixed_arguments}:2", "FAILED", "3"),
        (f"{mixed_arguments}:3", "TIMEOUT", ""),
        (f"{mixed_arguments}:4", "ERROR", ""),
        (f"{mixed_arguments}:5", "FAILED", "-9"),  # killed by a signal: the negative signal number
    ]
    assert outcomes["thread"] == (1, expected)
    assert outcomes["process"] == outcomes["thread"]


def test_unknown_executor_is_a_usage_error_listing_the_choices(run_cli, tmp_path, home):
    write_tasks(tmp_path / "tasks", {"a.sh": "echo a\n"})

    result = run_cli(["-T", "tasks", "-C", "bash @TASK@", "-r", "--executor", "nope"])

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "nope" in lines[0] and "process" in lines[0] and "thread" in lines[0]
    assert "Traceback" not in result.stderr
    assert list(home.rglob("*")) == []


# -- -m, -t, -s ----------------------------------------------------------------------------------

RECORD_TIMES = (
    'date +%s.%N > "{out}/$(basename "$0").start"\n'
    "sleep {sleep}\n"
    'date +%s.%N > "{out}/$(basename "$0").end"\n'
)


def recorded_times(out: Path, names: List[str]) -> List[Tuple[float, float]]:
    def read(path: Path) -> float:
        return float(path.read_text())

    return [(read(out / f"{name}.start"), read(out / f"{name}.end")) for name in names]


def max_overlap(intervals: List[Tuple[float, float]]) -> int:
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = peak = 0
    for _, change in events:
        running += change
        peak = max(peak, running)
    return peak


@pytest.mark.parametrize("executor", EXECUTORS)
def test_max_workers_bounds_the_tasks_running_at_once(run_cli, run_files, summary, tmp_path, executor):
    out = tmp_path / "times"
    out.mkdir()
    names = [f"t{i}.sh" for i in range(1, 5)]
    write_tasks(tmp_path / "tasks", {name: RECORD_TIMES.format(out=out, sleep=0.4) for name in names})

    result = run_cli(["-T", "tasks", "-C", "bash @TASK@", "-r", "-m", "2", "--executor", executor])

    assert result.returncode == 0, result.output
    assert max_overlap(recorded_times(out, names)) <= 2
    rows = run_files().rows
    assert len(rows) == 4
    assert {int(row["worker_id"]) for row in rows} <= {1, 2}
    assert summary(result.stdout, "- Workers:") == "2"
    assert summary(result.stdout, "- Executor:") == executor


def test_timeout_kills_the_task_and_records_timeout(run_cli, run_files, summary, tmp_path):
    slow_body = "echo before\nsleep 5\necho after\n"
    write_tasks(tmp_path / "tasks", {"slow.sh": slow_body, "quick.sh": "echo quick\n"})

    result = run_cli(["-T", "tasks", "-C", "bash @TASK@", "-r", "-t", "1"])

    assert result.returncode == 1, result.output
    files = run_files()
    rows = {Path(row["task_file"]).name: row for row in files.rows}
    assert len(rows) == 2
    slow = rows["slow.sh"]
    assert (slow["status"], slow["exit_code"], slow["error_message"]) == ("TIMEOUT", "", "Timeout after 1s")
    assert float(slow["duration_seconds"]) >= 1.0
    assert (rows["quick.sh"]["status"], rows["quick.sh"]["exit_code"]) == ("SUCCESS", "0")
    assert summary(result.stdout, "Failed:") == "1"
    assert summary(result.stdout, "Completed Successfully:") == "1"
    assert "  (of the failed: 1 timed out, 0 could not start)" in result.stdout.splitlines()
    # what the task printed before it was killed is kept
    output = files.output_log.read_text(encoding="utf-8")
    slow_block = output.split(f"Task: {tmp_path / 'tasks' / 'slow.sh'}\n", 1)[1].split("=" * 80, 1)[0]
    assert "Status: TIMEOUT\n" in slow_block
    assert "STDOUT:\nbefore\n\nSTDERR:" in slow_block


LOGGED_START = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .* Worker \d+: Starting task ")


def test_sleep_spaces_out_the_task_starts(run_cli, run_files, tmp_path):
    write_tasks(tmp_path / "tasks", {name: "true\n" for name in ("s1.sh", "s2.sh", "s3.sh")})

    result = run_cli(["-T", "tasks", "-C", "bash @TASK@", "-r", "-s", "0.3"])

    assert result.returncode == 0, result.output
    files = run_files()
    assert len(files.rows) == 3
    # The runner's own start times (main log, millisecond stamps), not the tasks' clocks, which lag
    # by however long each process took to come up on a busy machine.
    stamps = [match.group(1) for line in files.main_log.read_text(encoding="utf-8").splitlines()
              for match in [LOGGED_START.match(line)] if match]
    assert len(stamps) == 3, stamps
    starts = sorted(datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp() for stamp in stamps)
    gaps = [later - earlier for earlier, later in zip(starts, starts[1:])]
    assert all(gap >= 0.3 - 0.002 for gap in gaps), gaps  # a lower bound only; stamps are truncated to ms


# -- stop limits ---------------------------------------------------------------------------------


@pytest.mark.parametrize("stop_limits", [True, False])
def test_stop_limits_cancel_the_tasks_that_never_started(run_cli, run_files, summary, tmp_path, stop_limits):
    names = [f"t{i}.sh" for i in range(1, 9)]
    write_tasks(tmp_path / "tasks", {name: "exit 1\n" for name in names})
    flags = ["--enable-stop-limits"] if stop_limits else []

    result = run_cli(["-T", "tasks", "-C", "bash @TASK@", "-r", "-m", "1", *flags])

    assert result.returncode == 1, result.output
    rows = run_files().rows
    assert sorted(Path(row["task_file"]).name for row in rows) == names  # one row per task
    statuses = {Path(row["task_file"]).name: row["status"] for row in rows}
    if not stop_limits:
        assert set(statuses.values()) == {"FAILED"}
        assert summary(result.stdout, "- Stop Limits:") == "Disabled"
        return
    # max_consecutive_failures is 5: the first five fail, the other three never start
    assert [statuses[name] for name in names] == ["FAILED"] * 5 + ["CANCELLED"] * 3
    for row in rows:
        if row["status"] == "CANCELLED":
            never_ran = (row["start_time"], row["process_id"], row["worker_id"], row["exit_code"])
            assert never_ran == ("", "", "", "")
    assert summary(result.stdout, "Failed:") == "5"
    assert summary(result.stdout, "Cancelled:") == "3"
    assert summary(result.stdout, "- Stop Limits:") == "Enabled"
    assert "consecutive" in summary(result.stdout, "- Stopped:")


# -- no process left behind ----------------------------------------------------------------------

SPAWN_AND_HANG = """\
record() {{ echo "$1 $(cut -d' ' -f22 /proc/$1/stat)" >> {pids}; }}
sleep 37 & record $!
( sleep 37 & record $!; wait ) & record $!
sleep 37
"""
IGNORE_TERM = "trap '' TERM\n"  # inherited by the children: only SIGKILL after the grace period works


def _still_running(pid: int, start_ticks: str) -> bool:
    """True when the very process we recorded (same PID and start time) is alive and not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return False
    state, ticks = fields[0], fields[19]  # fields after "comm)": state is field 3, starttime field 22
    return ticks == start_ticks and state != "Z"


@pytest.mark.parametrize("ignores_term", [False, True], ids=["plain", "ignores-SIGTERM"])
@pytest.mark.parametrize("executor", EXECUTORS)
def test_a_timed_out_task_leaves_no_process_behind(
    run_cli, run_files, user_config, tmp_path, executor, ignores_term
):
    user_config("execution:\n  kill_grace_seconds: 0.5\n")
    pids = tmp_path / "pids.txt"
    body = (IGNORE_TERM if ignores_term else "") + SPAWN_AND_HANG.format(pids=pids)
    write_tasks(tmp_path / "tasks", {"spawner.sh": body})

    # -t 2: time enough for the task to start and record its children even on a busy machine
    result = run_cli(["-T", "tasks", "-C", "bash @TASK@", "-r", "-t", "2", "--executor", executor])

    assert result.returncode == 1, result.output
    rows = run_files().rows
    assert [(row["status"], row["error_message"]) for row in rows] == [("TIMEOUT", "Timeout after 2s")]
    if ignores_term:  # SIGTERM did nothing: SIGKILL came after the grace period
        assert float(rows[0]["duration_seconds"]) >= 2.5
    recorded = [line.split() for line in pids.read_text().splitlines()]
    assert len(recorded) == 3, recorded  # two sleeps and the subshell
    survivors = [pid for pid, ticks in recorded if _still_running(int(pid), ticks)]
    for pid in survivors:  # do not leave them to the next test run; they are this test's own
        os.kill(int(pid), 9)
    assert survivors == []
