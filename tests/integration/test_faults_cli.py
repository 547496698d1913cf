"""Hostile command lines and files at the CLI's edge: exit codes, conflicting flags, -E of a
variable every program needs, an unusable journal path, a symlink loop in a task directory."""

from __future__ import annotations

import os

import pytest


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["-C", "   "], "parallelr: error: empty command: give the command to run with -C/--Command\n"),
        (["-C", 'bash "@TASK@'], 'parallelr: error: unbalanced quote in command: bash "@TASK@\n'),
        (["-C", "bash @TASK@", "--file-extension", ""],
         "parallelr: error: --file-extension names no extension: '' (e.g. txt or csv,tsv)\n"),
    ],
    ids=["blank-command", "unbalanced-quote", "empty-extension"],
)
def test_a_bad_command_line_value_is_a_usage_error(run_cli, tasks, home, arguments, message):
    result = run_cli(["-T", str(tasks), *arguments, "-r"])

    assert (result.returncode, result.stderr) == (2, message)
    assert list(home.rglob("*")) == []


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--list-workers", "-r", "-T", "TASKS"], "--list-workers runs no tasks: drop -r, -T"),
        (["--check-dependencies", "-A", "args.txt", "-C", "echo @ARG@"],
         "--check-dependencies runs no tasks: drop -A, -C"),
        (["--validate-config", "-r", "-D"], "--validate-config runs no tasks: drop -r, -D"),
        (["--version", "--list-workers"],
         "--version and --list-workers cannot be combined: give one of them"),
    ],
    ids=["list-workers-run", "check-deps-args", "validate-run", "two-info"],
)
def test_conflicting_flags_are_refused(run_cli, tasks, home, arguments, message):
    result = run_cli([str(tasks) if word == "TASKS" else word for word in arguments])

    assert (result.returncode, result.stderr) == (2, f"parallelr: error: {message}\n")
    assert list(home.rglob("*")) == []


def test_settings_flags_still_go_with_show_config(run_cli):
    result = run_cli(["--show-config", "-m", "7"])

    assert result.returncode == 0, result.output
    assert "max_workers: 7" in result.stdout


@pytest.mark.parametrize("name", ["PATH", "LD_LIBRARY_PATH", "HOME"])
def test_env_var_of_a_variable_programs_need_to_start_is_warned_about(run_cli, tmp_path, name):
    (tmp_path / "values.txt").write_text("/nowhere\n", encoding="utf-8")

    result = run_cli(["-A", "values.txt", "-E", name, "-C", f"echo ${name}"])

    assert result.returncode == 0, result.output
    warnings = [warning for warning in result.warnings if warning.startswith(f"-E {name} replaces")]
    assert len(warnings) == 1, result.stdout


@pytest.mark.parametrize("kind", ["directory", "device"])
def test_validate_config_checks_the_journal_path(run_cli, user_config, kind):
    path = "/tmp" if kind == "directory" else os.devnull
    user_config(f"journal:\n  path: {path}\n")

    result = run_cli(["--validate-config"])

    assert result.returncode == 1, result.output
    assert result.stdout.splitlines()[:2] == [
        "✗ Configuration has problems:",
        f"  - journal.path {path} is not a regular file: point it at a database file",
    ]


def test_validate_config_checks_that_an_existing_journal_is_a_database(run_cli, user_config, tmp_path):
    (tmp_path / "notes.db").write_text("not a database\n", encoding="utf-8")
    user_config(f"journal:\n  path: {tmp_path / 'notes.db'}\n")

    result = run_cli(["--validate-config"])

    assert result.returncode == 1, result.output
    assert f"  - journal.path {tmp_path / 'notes.db'} is not a SQLite database" in result.stdout.splitlines()


def test_a_symlink_loop_in_a_task_directory_is_skipped_with_a_warning(run_cli, run_files, tasks):
    os.symlink("loop", tasks / "loop")

    result = run_cli(["-T", str(tasks), "-C", "bash @TASK@", "-r"])

    assert result.returncode == 0, result.output
    assert result.stderr == ""
    assert result.warnings == [f"skipping {tasks / 'loop'}: Too many levels of symbolic links"]
    assert [row["task_file"] for row in run_files().rows] == [str(tasks / "a.sh")]
