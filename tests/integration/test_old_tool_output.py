"""What scripts written for the old parallelr grep for: where each message goes and what it says.

COMPAT.md: the console log (``%(asctime)s - %(levelname)s - %(message)s``) is on stdout, fatal
errors are one line on stderr; inconsistent column counts, -D's announcement, non-regular -T
paths, oversized task files and NUL bytes behave as the old tool's did.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, List

import pytest
from ops_support import wait_ended

TIMESTAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"


@pytest.fixture
def tasks(tmp_path: Path) -> Path:
    directory = tmp_path / "tasks"
    directory.mkdir()
    for name in ("a.sh", "b.sh"):
        (directory / name).write_text(f"echo {name}\n", encoding="utf-8")
    return directory


def lines_matching(stdout: str, pattern: str) -> List[str]:
    return [line for line in stdout.splitlines() if re.fullmatch(pattern, line)]


# -- 1. the console log is on stdout -------------------------------------------------------------
def test_dry_run_prints_start_and_task_count_in_the_console_format_on_stdout(run_cli, tasks):
    result = run_cli(["-T", str(tasks), "-C", "bash @TASK@", "-m", "7"])

    assert result.returncode == 0, result.output
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert re.fullmatch(rf"{TIMESTAMP} - INFO - Starting parallel execution", lines[0]), lines
    assert re.fullmatch(rf"{TIMESTAMP} - INFO - Executing 2 tasks with 7 workers", lines[1]), lines
    assert lines[2].startswith("DRY RUN MODE")


def test_real_run_prints_start_and_task_count_before_the_tasks(run_cli, tasks):
    result = run_cli(["-T", str(tasks), "-C", "bash @TASK@", "-r", "-m", "3"])

    assert result.returncode == 0, result.output
    assert result.stderr == ""
    assert result.console[:2] == [
        ("INFO", "Starting parallel execution"), ("INFO", "Executing 2 tasks with 3 workers"),
    ]
    assert len(lines_matching(result.stdout, rf"{TIMESTAMP} - INFO - .*Task completed: .*")) == 2


def test_arguments_mode_says_created_then_executing(run_cli, tmp_path):
    (tmp_path / "hosts.txt").write_text("h1\nh2\nh3\n", encoding="utf-8")

    result = run_cli(["-A", "hosts.txt", "-C", "echo @ARG@"])

    assert result.returncode == 0, result.output
    assert result.plain_lines[0] == "Created 3 tasks"
    assert result.stdout.index("Created 3 tasks") < result.stdout.index("Executing 3 tasks with 20 workers")


def test_env_mismatch_warning_is_a_console_warning_on_stdout_and_the_run_goes_on(run_cli, tmp_path):
    (tmp_path / "servers.txt").write_text("s1,8080\ns2,8081\n", encoding="utf-8")

    result = run_cli(["-A", "servers.txt", "-S", "comma", "-E", "HOST", "-C", "echo $HOST", "-r"])

    assert result.returncode == 0, result.output
    assert result.stderr == ""
    (warning,) = lines_matching(result.stdout, rf"{TIMESTAMP} - WARNING - .*")
    assert "mismatch" in warning
    assert "2 lines" in warning


def test_fatal_errors_and_no_task_files_stay_one_line_on_stderr(run_cli, tmp_path):
    (tmp_path / "empty").mkdir()

    missing = run_cli(["-T", str(tmp_path / "nope"), "-C", "bash @TASK@", "-r"])
    nothing = run_cli(["-T", str(tmp_path / "empty"), "-C", "bash @TASK@", "-r"])

    assert missing.returncode == 1
    assert missing.stderr == f"parallelr: error: task path does not exist: {tmp_path / 'nope'}\n"
    assert nothing.returncode == 1
    assert nothing.stderr == (
        f"parallelr: error: No task files found in specified paths (-T {tmp_path / 'empty'})\n"
    )
    for result in (missing, nothing):
        assert "WARNING" not in result.stdout and "Traceback" not in result.output


# -- 2. inconsistent column counts ---------------------------------------------------------------
@pytest.mark.parametrize("run", [[], ["-r"]], ids=["dry-run", "run"])
def test_inconsistent_column_counts_are_refused_before_anything_runs(
    run_cli, fake_programs, tmp_path, home, run
):
    fake_programs.add("recorder")
    args = tmp_path / "servers.txt"
    args.write_text("s1,8080,prod\ns2,8081\ns3,8082,dev\n", encoding="utf-8")

    result = run_cli(["-A", str(args), "-S", "comma", "-C", "recorder @ARG_1@", *run], env=fake_programs.env)

    assert result.returncode == 1, result.output
    assert result.stderr == (
        f"parallelr: error: Inconsistent argument counts in {args}: 3 argument(s): lines 1, 3; "
        "2 argument(s): lines 2 (every line must split into the same number of columns)\n"
    )
    assert "DRY RUN MODE" not in result.stdout
    assert fake_programs.calls() == []
    assert list(home.rglob("*")) == []


def test_consistent_columns_with_comments_and_blank_lines_run(run_cli, fake_programs, tmp_path):
    fake_programs.add("recorder")
    (tmp_path / "servers.txt").write_text("# host,port\ns1,8080\n\ns2,8081\n", encoding="utf-8")

    result = run_cli(["-A", "servers.txt", "-S", "comma", "-C", "recorder @ARG_2@", "-r"],
                     env=fake_programs.env)

    assert result.returncode == 0, result.output
    assert sorted(call["argv"] for call in fake_programs.calls()) == [["8080"], ["8081"]]


# -- 3. -D announces itself before it detaches ---------------------------------------------------
@pytest.mark.parametrize("prog", ["parallelr", "ptasker"])
def test_daemon_start_is_announced_before_the_pid_lines(tmp_path, home, janitor: Any, tasks, prog):
    if prog == "parallelr":
        argv = [sys.executable, "-m", "parallelr", "-T", str(tasks), "-C", "bash @TASK@", "-r", "-D"]
    else:
        fake = tmp_path / "bin"
        fake.mkdir()
        (fake / "tasker").write_text("#!/bin/sh\nexit 0\n")
        (fake / "tasker").chmod(0o755)
        script = "import sys; from parallelr.cli import main; sys.exit(main(prog='ptasker'))"
        argv = [sys.executable, "-c", script, "-T", str(tasks), "-r", "-D"]
    env = {"PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    cli = janitor.popen(argv, home, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                        cwd=str(tmp_path))
    stdout, stderr = cli.communicate(timeout=30)

    assert cli.returncode == 0, stdout + stderr
    assert stderr == ""
    plain = [line for line in stdout.splitlines() if not re.match(TIMESTAMP, line)]
    assert plain[:2] == [f"Starting {prog} as daemon...", f"Task paths: {tasks}"]
    started = re.fullmatch(rf"Started {prog} daemon with PID (\d+) \(run \S+\)", plain[2])
    assert started, plain
    wait_ended(int(started.group(1)), timeout=30)


# -- 4. non-regular files contribute nothing -----------------------------------------------------
def test_a_device_given_with_t_is_skipped_and_alone_is_no_task_files(run_cli, run_files, tasks):
    alone = run_cli(["-T", os.devnull, "-C", "cat @TASK@", "-r"])
    filtered = run_cli(["-T", os.devnull, "--file-extension", "txt", "-C", "cat @TASK@", "-r"])
    beside = run_cli(["-T", os.devnull, str(tasks), "-C", "bash @TASK@", "-r"])

    assert alone.returncode == 1
    assert alone.stderr == f"parallelr: error: No task files found in specified paths (-T {os.devnull})\n"
    assert filtered.returncode == 1
    assert filtered.stderr == (
        "parallelr: error: No task files found in specified paths matching extensions: txt "
        f"(-T {os.devnull})\n"
    )
    assert beside.returncode == 0, beside.output
    assert beside.stderr == ""
    assert sorted(row["task_file"] for row in run_files().rows) == [str(tasks / "a.sh"), str(tasks / "b.sh")]


def test_a_fifo_in_a_directory_or_named_with_t_is_not_a_task(run_cli, tasks):
    os.mkfifo(tasks / "pipe.sh")

    result = run_cli(["-T", str(tasks), "-T", str(tasks / "pipe.sh"), "-C", "bash @TASK@"])

    assert result.returncode == 0, result.output
    assert result.stderr == ""
    assert [line for line in result.plain_lines if line.startswith("bash ")] == [
        f"bash {tasks / 'a.sh'}", f"bash {tasks / 'b.sh'}",
    ]


# -- 5. an oversized task file fails as that task ------------------------------------------------
def test_oversized_task_file_is_an_error_row_and_is_never_started(
    run_cli, run_files, summary, tmp_path, user_config
):
    user_config("advanced:\n  max_file_size: 1024\n")
    directory = tmp_path / "sized"
    directory.mkdir()
    marker = tmp_path / "big-ran"
    (directory / "big.sh").write_text(f"touch {marker}\n" + "#" * 1024 + "\n", encoding="utf-8")
    (directory / "small.sh").write_text("echo small\n", encoding="utf-8")

    result = run_cli(["-T", str(directory), "-C", "bash @TASK@", "-r"])

    assert result.returncode == 1, result.output
    assert not marker.exists()
    rows = {Path(row["task_file"]).name: row for row in run_files().rows}
    size = (directory / "big.sh").stat().st_size
    assert rows["big.sh"]["status"] == "ERROR"
    assert rows["big.sh"]["error_message"] == (
        f"task file is too large: {directory / 'big.sh'} is {size} bytes, the limit "
        "(advanced.max_file_size) is 1024 bytes"
    )
    assert rows["small.sh"]["status"] == "SUCCESS"
    assert summary(result.stdout, "Completed Successfully:") == "1"
    assert summary(result.stdout, "Failed:") == "1"
