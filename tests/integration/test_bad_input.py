"""Bad and unusual input through the real CLI.

Every error is one line on stderr with the documented exit status and no traceback, nothing runs
and nothing is written; unusual but valid input (unicode, spaces, shell characters, binary output)
runs every task and loses nothing. COMPAT.md "What it prints" and "Exit status".
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Dict

import pytest


def snapshot(directory: Path) -> Dict[str, bytes]:
    return {str(p.relative_to(directory)): (p.read_bytes() if p.is_file() else b"<dir>")
            for p in sorted(directory.rglob("*")) if "home" not in p.relative_to(directory).parts}


def assert_one_warning(result, exit_code: int, *words: str) -> str:
    """The run went on (``exit_code``) with exactly one console WARNING line on stdout, nothing on stderr."""
    assert result.returncode == exit_code, result.output
    assert result.stderr == ""
    assert len(result.warnings) == 1, result.stdout
    for word in words:
        assert word in result.warnings[0], (word, result.warnings[0])
    return result.warnings[0]


def assert_one_error(result, exit_code: int, *words: str) -> str:
    assert result.returncode == exit_code, result.output
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


# -- errors: one line, nothing runs, nothing is written ------------------------------------------


def test_missing_task_path(run_cli, tasks, home, tmp_path):
    before = snapshot(tmp_path)

    result = run_cli(["-T", str(tasks), "-T", "no/such/dir", "-C", "bash @TASK@", "-r"])

    assert "no/such/dir" in assert_one_error(result, 1, "does not exist")
    assert list(home.rglob("*")) == []
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    ("source", "filters"),
    [("empty", []), ("empty", ["--file-extension", "txt"]), ("empty/*.txt", [])],
)
def test_nothing_to_run_says_no_task_files_found(run_cli, tmp_path, home, source, filters):
    (tmp_path / "empty").mkdir()
    if source != "empty" or filters:
        (tmp_path / "empty" / "only.sh").write_text("echo\n", encoding="utf-8")

    result = run_cli(["-T", source, "-C", "bash @TASK@", "-r", *filters])

    assert result.returncode != 0
    assert_one_error(result, result.returncode, "No task files found")
    assert list(home.rglob("*")) == []


ARGUMENT_FILES = {
    "missing": (None, "does not exist"),
    "empty": (b"", "empty"),
    "only comments": (b"# one\n\n   \n# two\n", "empty"),
    "directory": ("dir", "directory"),
}


@pytest.mark.parametrize("case", sorted(ARGUMENT_FILES))
def test_unusable_arguments_file(run_cli, fake_programs, tmp_path, home, case):
    fake_programs.add("recorder")
    content, word = ARGUMENT_FILES[case]
    path = tmp_path / "args.txt"
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)

    result = run_cli(["-A", "args.txt", "-C", "recorder @ARG@", "-r"], env=fake_programs.env)

    assert "args.txt" in assert_one_error(result, 1, word)
    assert fake_programs.calls() == []
    assert list(home.rglob("*")) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files without read permission")
def test_unreadable_arguments_file(run_cli, fake_programs, tmp_path, home):
    fake_programs.add("recorder")
    path = tmp_path / "args.txt"
    path.write_text("one\n", encoding="utf-8")
    path.chmod(0)

    result = run_cli(["-A", "args.txt", "-C", "recorder @ARG@", "-r"], env=fake_programs.env)

    assert "args.txt" in assert_one_error(result, 1)
    assert fake_programs.calls() == []


def test_nul_byte_in_arguments_file(run_cli, fake_programs, tmp_path, home):
    fake_programs.add("recorder")
    (tmp_path / "args.txt").write_bytes(b"good\nba\x00d\nalso good\n")

    result = run_cli(["-A", "args.txt", "-C", "recorder @ARG@", "-r"], env=fake_programs.env)

    line = assert_one_error(result, 1, "validation failed", "null byte")
    assert f"line 2 of {tmp_path / 'args.txt'}" in line
    assert fake_programs.calls() == []  # not even the good lines
    assert list(home.rglob("*")) == []


@pytest.mark.parametrize(
    "content",
    [b"first \r\nsecond\r\n", b"\xef\xbb\xbffirst\nsecond\n", b"  first\t\n\n# comment\nsecond"],
    ids=["crlf", "bom", "blanks-no-final-newline"],
)
def test_arguments_file_line_endings_and_bom_are_not_part_of_the_arguments(
    run_cli, fake_programs, tmp_path, content
):
    fake_programs.add("recorder")
    (tmp_path / "args.txt").write_bytes(content)

    result = run_cli(["-A", "args.txt", "-C", "recorder @ARG@", "-r"], env=fake_programs.env)

    assert result.returncode == 0, result.output
    assert sorted(call["argv"] for call in fake_programs.calls()) == [["first"], ["second"]]


def test_non_utf8_bytes_in_arguments_file_reach_the_program_unchanged(
    home_env, run_files, fake_programs, tmp_path
):
    fake_programs.add("recorder")
    (tmp_path / "args.txt").write_bytes(b"caf\xe9\nna\xefve\n")

    # run_cli decodes the console strictly; the console echoes the raw bytes, so read it as bytes here
    completed = subprocess.run(
        [sys.executable, "-m", "parallelr", "-A", "args.txt", "-C", "recorder @ARG@", "-r"],
        env={**home_env, **fake_programs.env}, cwd=str(tmp_path), capture_output=True, timeout=120,
        stdin=subprocess.DEVNULL,
    )

    assert completed.returncode == 0, completed.stderr
    assert b"Traceback" not in completed.stderr
    received = sorted(call["argv"] for call in fake_programs.calls())
    # the recorder decodes argv with surrogateescape: "\udce9" is the raw byte 0xe9
    assert received == [["caf\udce9"], ["na\udcefve"]]
    assert [row["status"] for row in run_files().rows] == ["SUCCESS", "SUCCESS"]


def test_task_file_over_max_file_size_fails_as_that_task_and_the_others_run(
    run_cli, run_files, summary, tasks
):
    big = tasks / "big.sh"
    big.write_bytes(b"#" * (1048576 + 1))

    result = run_cli(["-T", str(tasks), "-C", "bash @TASK@", "-r"])

    assert result.returncode == 1, result.output
    assert result.stderr == ""
    rows = {row["task_file"]: row for row in run_files().rows}
    assert (rows[str(big)]["status"], rows[str(big)]["process_id"]) == ("ERROR", "")
    assert rows[str(big)]["error_message"] == (
        f"task file is too large: {big} is 1048577 bytes, the limit (advanced.max_file_size) is 1048576 bytes"
    )
    assert rows[str(tasks / "a.sh")]["status"] == "SUCCESS"
    assert summary(result.stdout, "Total Tasks:") == "2"
    assert summary(result.stdout, "Completed Successfully:") == "1"
    assert summary(result.stdout, "Failed:") == "1"


@pytest.mark.parametrize(
    "text",
    [
        "- just\n- a list\n",
        'limits: "unclosed\n',
        "limits: 5\n",
        "limits:\n  max_workers: 5\n timeout_seconds: 3\n",
    ],
)
def test_bad_yaml_user_config(run_cli, user_config, tasks, home, text):
    path = user_config(text)

    result = run_cli(["-T", str(tasks), "-C", "bash @TASK@", "-r"])

    assert str(path) in assert_one_error(result, 1)
    assert not (home / "parallelr" / "logs").exists()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("custom_date_format", "%Y/%m"),  # a "/" would put the log files into a missing directory
        ("file_format", "%(no_such_field)s"),
        ("console_format", "%(unclosed"),
    ],
)
def test_unusable_logging_value_in_user_config_is_a_warning_and_falls_back(
    run_cli, run_files, user_config, tasks, key, value
):
    """README: problems in the user config are warnings naming the key; the script value is used."""
    user_config(f"logging:\n  {key}: {value!r}\n")

    result = run_cli(["-T", str(tasks), "-C", "bash @TASK@", "-r"])

    assert "Logging error" not in result.output
    assert "Traceback" not in result.output
    assert_one_warning(result, 0, f"logging.{key}")
    files = run_files()  # the default file names (custom_date_format fell back)
    assert [row["status"] for row in files.rows] == ["SUCCESS"]
    assert "Task completed" in files.main_log.read_text(encoding="utf-8")


def test_home_that_is_not_a_directory_is_one_error_line(run_cli, tasks, tmp_path):
    home = tmp_path / "not-a-directory"
    home.write_text("", encoding="utf-8")

    result = run_cli(["-T", str(tasks), "-C", "bash @TASK@", "-r"], env={"HOME": str(home)})

    assert str(home) in assert_one_error(result, 1)
    assert home.read_text(encoding="utf-8") == ""


def test_wrong_type_in_user_config_is_a_warning_and_the_run_goes_on(
    run_cli, run_files, summary, user_config, tasks
):
    user_config('limits:\n  max_workers: "many"\n')

    result = run_cli(["-T", str(tasks), "-C", "bash @TASK@", "-r"])

    assert result.returncode == 0, result.output
    warning = assert_one_warning(result, 0, "limits.max_workers")
    assert "many" in warning
    assert summary(result.stdout, "- Workers:") == "20"  # fell back to the script value
    assert [row["status"] for row in run_files().rows] == ["SUCCESS"]


@pytest.mark.parametrize(
    ("arguments", "word"),
    [
        (["--bogus"], "--bogus"),
        (["-S", "foo", "-A", "args.txt"], "foo"),
        (["-E", "HOSTNAME"], "-A"),
        (["-m", "0"], "-m"),
        (["-m", "many"], "many"),
        (["-t", "0"], "-t"),
        (["-s", "61"], "-s"),
    ],
)
def test_usage_errors_exit_2(run_cli, tasks, tmp_path, home, arguments, word):
    (tmp_path / "args.txt").write_text("x\n", encoding="utf-8")

    result = run_cli(["-T", str(tasks), "-C", "bash @TASK@", "-r", *arguments])

    assert_one_error(result, 2, word)
    assert list(home.rglob("*")) == []


def test_missing_command_is_a_usage_error(run_cli, tasks, home):
    result = run_cli(["-T", str(tasks), "-r"])

    assert_one_error(result, 2, "-C")
    assert list(home.rglob("*")) == []


# -- unusual but valid input: every task runs, nothing is lost -----------------------------------

ECHO_SELF = 'printf "%s\\n" "$0"\n'


def test_unicode_and_spaces_in_task_paths_and_home(run_cli, run_files, summary, tmp_path):
    home = tmp_path / "hôme dir ü"
    home.mkdir()
    directory = tmp_path / "tâches et espaces"
    directory.mkdir()
    names = ["é 1.sh", "日本 2.sh", "plain.sh"]
    for name in names:
        (directory / name).write_text(ECHO_SELF, encoding="utf-8")

    result = run_cli(["-T", str(directory), "-C", "bash @TASK@", "-r"], env={"HOME": str(home)})

    assert result.returncode == 0, result.output
    assert result.stderr == ""
    files = run_files(home=home)
    assert sorted(row["task_file"] for row in files.rows) == sorted(str(directory / name) for name in names)
    assert {row["status"] for row in files.rows} == {"SUCCESS"}
    assert Path(summary(result.stdout, "- Main Log:").split(" (")[0]) == files.main_log
    assert files.main_log.is_file()
    output = files.output_log.read_text(encoding="utf-8")
    for name in names:
        assert f"STDOUT:\n{directory / name}\n" in output
    assert (home / "parallelr" / "workspace").is_dir()


SHELL_NAMES = ["a;b.sh", "$(echo x).sh", "`id`.sh", "c && d.sh", "e|f.sh", "g'h\"i.sh", "*.sh", "-rf.sh"]


def test_shell_metacharacters_in_file_names(run_cli, run_files, tmp_path, home):
    directory = tmp_path / "tasks"
    directory.mkdir()
    for name in SHELL_NAMES:
        (directory / name).write_text(ECHO_SELF, encoding="utf-8")
    expected = sorted(str(directory / name) for name in SHELL_NAMES)

    dry = run_cli(["-T", str(directory), "-C", "bash @TASK@"])
    real = run_cli(["-T", str(directory), "-C", "bash @TASK@", "-r"])

    assert dry.returncode == 0, dry.stderr
    commands = [shlex.split(line) for line in dry.stdout.splitlines() if line.startswith("bash ")]
    assert commands == [["bash", path] for path in expected]
    assert real.returncode == 0, real.output
    files = run_files()
    assert sorted(row["task_file"] for row in files.rows) == expected
    assert {row["status"] for row in files.rows} == {"SUCCESS"}
    output = files.output_log.read_text(encoding="utf-8")
    for path in expected:
        assert f"STDOUT:\n{path}\n" in output
    assert sorted(p.name for p in directory.iterdir()) == sorted(SHELL_NAMES)  # nothing created or lost


def test_binary_output_from_a_task(run_cli, run_files, tmp_path):
    directory = tmp_path / "tasks"
    directory.mkdir()
    script = "printf 'start\\n\\377\\376\\000\\001\\200 bytes\\n'\nprintf '\\377\\000' >&2\necho END\n"
    (directory / "binary.sh").write_text(script, encoding="utf-8")

    result = run_cli(["-T", str(directory), "-C", "bash @TASK@", "-r"])

    assert result.returncode == 0, result.output
    files = run_files()
    assert [(row["status"], row["exit_code"]) for row in files.rows] == [("SUCCESS", "0")]
    output = files.output_log.read_text(encoding="utf-8")  # still valid UTF-8
    stdout = output.split("STDOUT:\n", 1)[1].split("\n\nSTDERR:", 1)[0]
    assert stdout.startswith("start\n") and stdout.endswith(" bytes\nEND")
