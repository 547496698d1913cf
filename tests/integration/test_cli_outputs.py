"""What a real run writes: log file names, the summary block, the CSV summary and the output log.

Spec: parallelr-README.md "Logging and Output" / "Summary Report"; COMPAT.md "What it prints" and
"Where files go".
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest

CSV_HEADER = (
    "start_time;end_time;status;process_id;worker_id;task_file;command;exit_code;"
    "duration_seconds;memory_mb;cpu_percent;error_message"
)
SEPARATOR = "=" * 80
STEM = re.compile(r"parallelr_(\d+)_(\d\d[A-Z][a-z]{2}\d\d_\d{6})")
ISO_SECONDS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")

# name -> (body, status, exit code, stdout, stderr)
TASKS = {
    "a_ok.sh": ("echo alpha\necho second line\n", "SUCCESS", "0", "alpha\nsecond line", ""),
    "b_fails.sh": ("echo beta\necho 'went wrong' >&2\nexit 3\n", "FAILED", "3", "beta", "went wrong"),
    "c_ok_stderr.sh": ("echo gamma\necho 'just a note' >&2\n", "SUCCESS", "0", "gamma", "just a note"),
}


@pytest.fixture
def task_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "tasks"
    directory.mkdir()
    for name, (body, *_rest) in TASKS.items():
        (directory / name).write_text(body, encoding="utf-8")
    return directory


def parse_output_log(text: str) -> List[Dict[str, str]]:
    """One dict per block: its ``Label: value`` header lines plus ``STDOUT`` and ``STDERR``."""
    blocks = []
    chunk: List[str] = []
    for line in text.split("\n"):
        if line == SEPARATOR:
            if any(chunk):
                blocks.append(chunk)
            chunk = []
        else:
            chunk.append(line)
    assert not any(chunk), f"text after the last separator: {chunk!r}"
    parsed = []
    for lines in blocks:
        stdout_at = lines.index("STDOUT:")
        stderr_at = lines.index("STDERR:")
        fields = dict(line.split(": ", 1) for line in lines[:stdout_at] if ": " in line)
        fields["STDOUT"] = "\n".join(lines[stdout_at + 1:stderr_at]).strip("\n")
        fields["STDERR"] = "\n".join(lines[stderr_at + 1:]).strip("\n")
        parsed.append(fields)
    return parsed


def test_a_run_writes_its_log_files_and_results_and_the_summary_names_them(
    run_cli, run_files, summary, task_dir, home
):
    result = run_cli(["-T", str(task_dir), "-C", "bash @TASK@", "-r", "-m", "2"])

    assert result.returncode == 1, result.output  # one task failed
    files = run_files()
    log_dir = home / "parallelr" / "logs"
    stem = f"parallelr_{files.pid}_{files.timestamp}"
    assert sorted(p.name for p in log_dir.iterdir()) == sorted(
        [f"{stem}.log", f"{stem}_summary.csv", f"{stem}_output.txt", f"{stem}_results.jsonl"]
    )
    assert STEM.fullmatch(stem)
    assert summary(result.stdout, "- Main Log:") == f"{log_dir / (stem + '.log')} (rotating)"
    assert summary(result.stdout, "- Summary:") == f"{log_dir / (stem + '_summary.csv')} (session-specific)"
    assert summary(result.stdout, "- Output:") == (
        f"{log_dir / (stem + '_output.txt')} (enabled by default, disable with --no-task-output-log)"
    )
    assert summary(result.stdout, "- Results:") == str(log_dir / (stem + "_results.jsonl"))
    for label in ("- Main Log:", "- Summary:", "- Output:", "- Results:"):
        path = Path(summary(result.stdout, label).split(" (")[0])
        assert path.is_absolute() and path.is_file(), label
    assert summary(result.stdout, "- Log Dir:") == str(log_dir)
    assert summary(result.stdout, "- Process ID:") == str(files.pid)
    assert summary(result.stdout, "- Workers:") == "2"
    assert summary(result.stdout, "Total Tasks:") == "3"
    assert summary(result.stdout, "Completed Successfully:") == "2"
    assert summary(result.stdout, "Failed:") == "1"
    assert summary(result.stdout, "Cancelled:") == "0"
    assert summary(result.stdout, "Success Rate:") == "66.7%"
    assert "Parallel Task Execution Summary" in result.stdout
    assert summary(result.stdout, "- Stop Limits:") == "Disabled"
    # a finished run removes its own line from the PID file
    pid_file = home / "parallelr" / "pids" / "parallelr.pids"
    assert str(files.pid) not in (pid_file.read_text().split() if pid_file.exists() else [])


def test_main_log_records_the_run_in_the_spec_format(run_cli, run_files, task_dir):
    result = run_cli(["-T", str(task_dir), "-C", "bash @TASK@", "-r", "-m", "1"])

    assert result.returncode == 1, result.output
    files = run_files()
    text = files.main_log.read_text(encoding="utf-8")
    assert f" - P{files.pid} - INFO - [" in text
    assert "Starting parallel execution" in text
    for name, (_body, status, *_rest) in TASKS.items():
        assert f"Worker 1: Starting task {task_dir / name}" in text
        if status == "SUCCESS":
            assert f"Task completed: {task_dir / name}" in text
    assert "Total Tasks: 3" in text  # the summary block goes to the main log too


def test_csv_summary_has_the_header_and_one_row_per_task(run_cli, run_files, task_dir):
    result = run_cli(["-T", str(task_dir), "-C", "bash @TASK@", "-r", "-m", "2"])

    assert result.returncode == 1, result.output
    files = run_files()
    assert files.header == CSV_HEADER
    assert len(files.rows) == len(TASKS)
    by_name = {Path(row["task_file"]).name: row for row in files.rows}
    assert sorted(by_name) == sorted(TASKS)
    pids = set()
    for name, (_body, status, exit_code, _out, _err) in TASKS.items():
        row = by_name[name]
        path = task_dir / name
        assert row["task_file"] == str(path)
        assert row["command"] == f"bash {path}"
        assert (row["status"], row["exit_code"]) == (status, exit_code)
        assert row["error_message"] == ("" if status == "SUCCESS" else f"Exit code {exit_code}")
        assert int(row["worker_id"]) in (1, 2)
        assert ISO_SECONDS.fullmatch(row["start_time"]) and ISO_SECONDS.fullmatch(row["end_time"])
        assert row["start_time"] <= row["end_time"]
        assert float(row["duration_seconds"]) >= 0
        assert float(row["memory_mb"]) >= 0 and float(row["cpu_percent"]) >= 0
        pids.add(int(row["process_id"]))
    assert len(pids) == 3 and files.pid not in pids


def test_output_log_has_one_block_per_task_with_its_output(run_cli, run_files, task_dir):
    result = run_cli(["-T", str(task_dir), "-C", "bash @TASK@", "-r", "-m", "2"])

    assert result.returncode == 1, result.output
    files = run_files()
    assert files.output_log is not None
    blocks = parse_output_log(files.output_log.read_text(encoding="utf-8"))
    assert len(blocks) == len(TASKS)
    rows = {row["task_file"]: row for row in files.rows}
    by_name = {Path(block["Task"]).name: block for block in blocks}
    assert sorted(by_name) == sorted(TASKS)
    for name, (_body, status, exit_code, stdout, stderr) in TASKS.items():
        block = by_name[name]
        path = str(task_dir / name)
        assert block["Task"] == path
        assert block["Worker"] == rows[path]["worker_id"]
        assert block["Command"] == f"bash {path}"
        assert block["Status"] == status
        assert block["Exit Code"] == exit_code
        assert block["STDOUT"] == stdout
        assert block["STDERR"] == stderr
        for label in ("Duration", "Memory", "Start", "End"):
            assert label in block


def test_no_task_output_log_writes_no_output_file(run_cli, run_files, summary, task_dir, home):
    result = run_cli(["-T", str(task_dir), "-C", "bash @TASK@", "-r", "--no-task-output-log"])

    assert result.returncode == 1, result.output
    files = run_files()
    assert files.output_log is None
    assert list((home / "parallelr" / "logs").glob("*_output.txt")) == []
    assert summary(result.stdout, "- Output:").startswith("disabled")
    assert len(files.rows) == 3  # the CSV is still written


HUGE_TASK = "head -c 100000000 /dev/zero | tr '\\0' 'x'; echo END\n"
MAX_RSS_KB = 150 * 1024


def test_a_task_printing_100_mb_keeps_the_tail_and_the_runner_stays_small(home_env, tmp_path, run_files):
    task = tmp_path / "tasks" / "huge.sh"
    task.parent.mkdir()
    task.write_text(HUGE_TASK, encoding="utf-8")
    argv = ["-T", str(task), "-C", "bash @TASK@", "-r"]
    # The runner reports its own peak RSS after main() returned, in-process (wait4 of the CLI would
    # not tell the runner's own memory apart from its children's).
    code = (
        "import resource, sys\n"
        "from parallelr.cli import main\n"
        f"status = main({argv!r}, prog='parallelr')\n"
        "print('MAXRSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
        "sys.exit(status)\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], env=home_env, cwd=str(tmp_path), capture_output=True,
        text=True, timeout=120, stdin=subprocess.DEVNULL,
    )

    assert completed.returncode == 0, completed.stderr
    reported = completed.stderr.splitlines()
    max_rss = [int(line.split()[1]) for line in reported if line.startswith("MAXRSS_KB ")]
    assert len(max_rss) == 1, completed.stderr
    assert max_rss[0] < MAX_RSS_KB
    files = run_files()
    assert [(row["status"], row["exit_code"]) for row in files.rows] == [("SUCCESS", "0")]
    assert files.output_log is not None
    (block,) = parse_output_log(files.output_log.read_text(encoding="utf-8"))
    # the last max_output_capture (1000) characters: "x" * 996 + "END\n", shown without the final newline
    assert block["STDOUT"] == "x" * 996 + "END"
    assert files.output_log.stat().st_size < 10_000
