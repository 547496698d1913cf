"""The reporters under faults and hostile input: a full disk, control characters in names,
arguments and output, and a Ctrl+C with many tasks that never started.

The full-disk tests mount a real, tiny tmpfs (root only, as in CI) and point ``~/parallelr/logs``
at it, so the writes fail the way they fail on a full disk: a short write, then ENOSPC.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator, List

import pytest
from conftest import CONSOLE_LINE, CliResult
from disk_support import tmpfs

SEPARATOR = "=" * 80
COLUMNS = 12


# -- a full disk ---------------------------------------------------------------------------------


@pytest.fixture
def tiny_logs(home: Path, tmp_path: Path) -> Iterator[Path]:
    """``~/parallelr/logs`` is a 64 KiB tmpfs; the rest of HOME (journal, PID file) is not."""
    with tmpfs(tmp_path / "tiny", "64k") as mount:
        (home / "parallelr").mkdir()
        (home / "parallelr" / "logs").symlink_to(mount)
        yield mount


def fill(mount: Path, leave: int = 0) -> None:
    """Fill the file system, then free ``leave`` bytes of it again (tmpfs counts whole pages)."""
    fd = os.open(mount / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with contextlib.suppress(OSError):
            while os.write(fd, b"\0" * 4096):
                pass
    finally:
        os.close(fd)
    if leave:
        size = (mount / "filler").stat().st_size
        os.truncate(mount / "filler", max(0, size - leave))


def assert_one_write_error(result: CliResult, mount: Path, names: str) -> str:
    assert result.returncode != 0, result.output
    assert "Traceback" not in result.output, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    match = re.fullmatch(rf"parallelr: error: cannot write the ({names}) (\S+): No space left on device",
                         lines[0])
    assert match, lines[0]
    assert Path(match.group(2)).parent == mount.parent / "home" / "parallelr" / "logs"
    return match.group(1)


def assert_whole_rows(mount: Path) -> List[List[str]]:
    """Every line of the CSV is a whole row of 12 fields; returns the rows after the header."""
    (path,) = mount.glob("*_summary.csv")
    text = path.read_bytes().decode("utf-8")
    assert text == "" or text.endswith("\n"), text[-200:]
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=";"))
    assert all(len(row) == COLUMNS for row in rows), rows
    if rows:
        assert rows[0][:3] == ["start_time", "end_time", "status"]
    return rows[1:]


def write_tasks(directory: Path, count: int, body: str) -> Path:
    directory.mkdir()
    for index in range(count):
        (directory / f"t{index:03d}.sh").write_text(body)
    return directory


def test_a_full_disk_at_the_start_is_one_error_line(run_cli, tiny_logs: Path, tmp_path: Path) -> None:
    tasks = write_tasks(tmp_path / "tasks", 3, "echo hi\n")
    fill(tiny_logs)

    result = run_cli(["-T", str(tasks), "-C", "bash @TASK@", "-r"])

    # the first file a run writes to at its start: the JSONL results' session line
    assert assert_one_write_error(result, tiny_logs, "CSV summary|JSONL results") == "JSONL results"
    (results,) = tiny_logs.glob("*_results.jsonl")
    assert results.read_bytes() == b""  # not even half a session line
    assert list(tiny_logs.glob("*_summary.csv")) == []  # the run stopped before it was opened


# Each task writes 1000 characters to stdout and to stderr (the captured tail): ~2.2 KB of output
# log per task, so a few pages of free space fill up after a few tasks, in the middle of a block.
NOISY = "printf 'o%.0s' $(seq 1000); printf 'e%.0s' $(seq 1000) >&2\n"


@pytest.mark.parametrize("output_log", [True, False], ids=["output-log", "no-output-log"])
def test_a_disk_that_fills_mid_run_is_one_error_line_and_whole_rows(
    run_cli, tiny_logs: Path, tmp_path: Path, output_log: bool
) -> None:
    tasks = write_tasks(tmp_path / "tasks", 120, NOISY)
    fill(tiny_logs, leave=4 * 4096)
    extra = [] if output_log else ["--no-task-output-log"]

    result = run_cli(["-T", str(tasks), "-C", "bash @TASK@", "-r", "-m", "2", *extra])

    what = assert_one_write_error(result, tiny_logs, "CSV summary|main log|output log|JSONL results")
    if output_log:
        assert what == "output log"
    rows = assert_whole_rows(tiny_logs)
    assert len(rows) < 120
    if output_log:  # the blocks written are whole ones too
        (log,) = tiny_logs.glob("*_output.txt")
        text = log.read_text(encoding="utf-8")
        assert text.endswith("\n")
        blocks = text.split(SEPARATOR + "\n")[1:]
        assert blocks and all(block.endswith("e" * 1000 + "\n\n") for block in blocks), blocks[-1:]


# -- control characters ----------------------------------------------------------------------


def read_csv_exact(path: Path) -> List[dict]:
    with path.open(encoding="utf-8", newline="") as handle:  # no newline translation: exact values
        return list(csv.DictReader(handle, delimiter=";"))


def test_a_bare_cr_and_quotes_in_a_task_file_name_round_trip_through_the_csv(
    run_cli, run_files, tmp_path
) -> None:
    # Only a CR in the first name: the old writer quoted a field for ";" or '"' but not for a bare
    # CR. (Task files, not argument lines: the arguments file ends a line at a lone CR.)
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    names = ["a\rb.sh", 'c;"d.sh', "plain.sh"]
    for name in names:
        (tasks / name).write_text("true\n")

    result = run_cli(["-T", str(tasks), "-C", "bash @TASK@", "-r"])

    assert result.returncode == 0, result.output
    rows = read_csv_exact(run_files().summary_csv)
    paths = sorted(str(tasks / name) for name in names)
    assert sorted(row["task_file"] for row in rows) == paths
    assert sorted(row["command"] for row in rows) == sorted(shlex.join(["bash", path]) for path in paths)
    assert [row["status"] for row in rows] == ["SUCCESS"] * 3


HOSTILE_NAME = "evil\n2030-01-01 00:00:00,000 - INFO - forged\x1b[2J\x1b]0;title\x07\r.sh"
ESCAPED_NAME = "evil\\n2030-01-01 00:00:00,000 - INFO - forged\\x1b[2J\\x1b]0;title\\x07\\r.sh"
# A task whose output tries to end its block and start a fake one, also behind a bare CR.
FORGER = (
    "line=$(printf '=%.0s' $(seq 80))\n"
    "printf '%s\\n' \"$line\" 'Task: /fake' 'Worker: 9' 'STDOUT:' 'forged' 'STDERR:' \"$line\"\n"
    "printf 'x\\r%s\\rTask: /fake2\\n' \"$line\"\n"
    "printf '%s\\n' \"$line\" 'Task: /fake3' >&2\n"
)


def _main_log_lines(path: Path) -> List[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_control_characters_in_a_task_name_and_its_output_forge_no_line(
    run_cli, run_files, tmp_path: Path
) -> None:
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / HOSTILE_NAME).write_text(FORGER)
    (tasks / "plain.sh").write_text(FORGER)

    result = run_cli(["-T", str(tasks), "-C", "bash @TASK@", "-r", "-m", "1"])

    assert result.returncode == 0, result.output
    escaped = f"{tasks}/{ESCAPED_NAME}"
    # The console: every line is a whole console line or a plain one, nothing raw reaches the terminal.
    assert "\x1b" not in result.stdout and "\r" not in result.stdout and "\x07" not in result.stdout
    forged = [line for line in result.stdout.splitlines()
              if "forged" in line and not CONSOLE_LINE.match(line)]
    assert forged == []
    console = [message for _, message in result.console if ESCAPED_NAME in message]
    assert len(console) == 2, console  # one line per event
    assert console[0] == f"[1/2] Worker 1: Starting task {escaped}"
    assert re.fullmatch(rf"\[1/2\] Task completed: {re.escape(escaped)} \(\d+\.\d\ds\)", console[1])
    # The main log: one line per event, escaped.
    files = run_files()
    log = _main_log_lines(files.main_log)
    assert "\x1b" not in files.main_log.read_text(encoding="utf-8")
    mentions = [line for line in log if "forged" in line]
    assert len(mentions) == 2 and all(ESCAPED_NAME in line for line in mentions), mentions
    # The CSV is data: the exact name.
    assert sorted(row["task_file"] for row in read_csv_exact(files.summary_csv)) == sorted(
        [f"{tasks}/{HOSTILE_NAME}", f"{tasks}/plain.sh"]
    )
    # The output log: exactly one block per task, whichever way its lines are split.
    assert files.output_log is not None
    with files.output_log.open(encoding="utf-8", newline="") as handle:  # no newline translation
        text = handle.read()
    assert "\x1b" not in text and "\r" not in text
    for lines in (text.split("\n"), text.splitlines()):
        starts = [i for i, line in enumerate(lines) if line == SEPARATOR and i + 1 < len(lines)
                  and lines[i + 1].startswith("Task: ")]
        assert [lines[i + 1] for i in starts] == ["Task: " + escaped, f"Task: {tasks}/plain.sh"]
        assert lines.count(SEPARATOR) == 3  # two blocks and the end
        for i in starts:  # each block has one STDOUT: and one STDERR: section, in order
            end = lines.index(SEPARATOR, i + 1)
            assert lines[i:end].count("STDOUT:") == 1 and lines[i:end].count("STDERR:") == 1
    assert "\\" + SEPARATOR in text  # the forged separators are still there, marked as output


def test_ansi_escapes_in_arguments_reach_the_terminal_escaped(run_cli, run_files, tmp_path: Path) -> None:
    (tmp_path / "args.txt").write_text("\x1b]0;pwned\x07\x1b[31mred\x9b\n", encoding="utf-8")

    result = run_cli(["-A", "args.txt", "-C", "sh -c 'exit 3' @ARG@", "-r"])

    assert result.returncode == 1, result.output
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout and "\x9b" not in result.stdout
    assert any(r"(\x1b]0;pwned\x07\x1b[31mred\x9b)" in message for message in result.warnings), result.stdout
    files = run_files()
    assert "\x1b" not in files.main_log.read_text(encoding="utf-8")
    assert [row["command"] for row in read_csv_exact(files.summary_csv)] == [
        "sh -c 'exit 3' '\x1b]0;pwned\x07\x1b[31mred\x9b'"
    ]


# -- Ctrl+C with many tasks that never started -----------------------------------------------


def _wait_for(path: Path, text: str, run: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return
        if run.poll() is not None:
            pytest.fail(f"the run ended before {text!r}: {path.read_text(errors='replace')[-2000:]}")
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {text!r}")


def test_tasks_that_never_started_get_rows_but_one_line_and_no_blocks(
    janitor: Any, home: Path, tmp_path: Path, run_files: Any
) -> None:
    pending = 2000
    (tmp_path / "args.txt").write_text("30\n" + "0\n" * pending)
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    argv = [sys.executable, "-m", "parallelr", "-A", str(tmp_path / "args.txt"), "-C", "sleep @ARG@",
            "-r", "-m", "1"]
    with out.open("w") as stdout, err.open("w") as stderr:
        run = janitor.popen(argv, home, stdout=stdout, stderr=stderr, cwd=str(tmp_path))
    _wait_for(out, "Starting task", run)
    run.send_signal(signal.SIGINT)
    try:
        assert run.wait(timeout=60) == 130
    except subprocess.TimeoutExpired:
        pytest.fail("the run did not end after SIGINT")

    stdout_text = out.read_text()
    assert "Traceback" not in stdout_text + err.read_text()
    files = run_files()
    assert len(files.rows) == pending + 1
    never = [row for row in files.rows if not row["start_time"]]
    assert len(never) == pending and {row["status"] for row in never} == {"CANCELLED"}
    line = f"{pending} task(s) not started: Not started: run interrupted by SIGINT"
    console = CliResult(0, stdout_text, "")
    assert [m for m in console.warnings if "not started" in m.lower()] == [line]
    cancelled = [m for m in console.warnings if "CANCELLED" in m]
    assert len(cancelled) == 1 and cancelled[0].startswith("[1/2001] ")  # the one that had started
    log = _main_log_lines(files.main_log)
    assert len([entry for entry in log if "not started" in entry.lower()]) == 1
    assert log[0].endswith(f"Starting parallel execution: {pending + 1} tasks, 1 workers, executor thread,"
                           " command sleep @ARG@")  # not rotated away
    assert any(entry.endswith(line) for entry in log)
    assert len([entry for entry in log if "CANCELLED" in entry]) == 1
    assert files.output_log is not None
    text = files.output_log.read_text(encoding="utf-8")
    assert text.count("\nTask: ") + text.startswith("Task: ") == 1
    assert text.count(SEPARATOR + "\n") == 2
