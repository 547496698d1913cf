"""File mode through the real CLI: which task files -T finds, the dry run, and the task's workspace.

Spec: parallelr-README.md "Usage" / "Task File Format" / "Workspace Isolation"; COMPAT.md.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Iterable, List

import pytest

DRY_RUN_BANNER = "DRY RUN MODE"


def make_files(directory: Path, names: Iterable[str], body: str = 'echo "$0"\n') -> Dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    made = {}
    for name in names:
        path = directory / name
        path.write_text(body, encoding="utf-8")
        made[name] = path
    return made


def dry_run_commands(stdout: str, program: str = "bash") -> List[str]:
    """The command lines of a dry run, in the printed order (after the DRY RUN MODE banner)."""
    lines = stdout.splitlines()
    banner = [index for index, line in enumerate(lines) if DRY_RUN_BANNER in line]
    assert len(banner) == 1, stdout
    return [line for line in lines[banner[0] + 1:] if line.startswith(program + " ")]


def bash_lines(paths: Iterable[Path]) -> List[str]:
    return [f"bash {path}" for path in paths]


def snapshot(directory: Path) -> Dict[str, bytes]:
    return {str(p.relative_to(directory)): (p.read_bytes() if p.is_file() else b"<dir>")
            for p in sorted(directory.rglob("*"))}


@pytest.fixture
def tasks(tmp_path: Path) -> Dict[str, Path]:
    """tasks/ with three .sh files (created out of order), a .txt and a sub-directory (not a task)."""
    made = make_files(tmp_path / "tasks", ["b.sh", "c.sh", "a.sh", "notes.txt"])
    make_files(tmp_path / "tasks" / "sub", ["nested.sh"])
    return made


# -- finding task files --------------------------------------------------------------------------


def test_dry_run_of_a_directory_prints_sorted_absolute_commands_and_writes_nothing(
    run_cli, tasks, tmp_path, home
):
    before = snapshot(tmp_path)

    result = run_cli(["-T", "tasks", "-C", "bash @TASK@"])

    assert result.returncode == 0, result.stderr
    assert DRY_RUN_BANNER in result.stdout
    expected = bash_lines(tasks[name] for name in ("a.sh", "b.sh", "c.sh", "notes.txt"))
    assert dry_run_commands(result.stdout) == expected
    assert all(Path(line.split(" ", 1)[1]).is_absolute() for line in expected)
    assert list(home.rglob("*")) == []  # no workspace, no logs, no pid file
    assert snapshot(tmp_path) == before  # and nothing next to the tasks either


def test_several_paths_after_one_T_as_the_shell_expands_them(run_cli, tasks):
    result = run_cli(["-T", str(tasks["c.sh"]), "tasks/a.sh", "-C", "bash @TASK@"])

    assert result.returncode == 0, result.stderr
    assert dry_run_commands(result.stdout) == bash_lines([tasks["a.sh"], tasks["c.sh"]])


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("tasks/*.sh", ["a.sh", "b.sh", "c.sh"]),
        ("{tmp}/tasks/[ab].sh", ["a.sh", "b.sh"]),
        ("tasks/*", ["a.sh", "b.sh", "c.sh", "notes.txt"]),  # the sub-directory is not a task
    ],
)
def test_quoted_glob_pattern_is_expanded_by_parallelr(run_cli, tasks, tmp_path, pattern, expected):
    result = run_cli(["-T", pattern.format(tmp=tmp_path), "-C", "bash @TASK@"])

    assert result.returncode == 0, result.stderr
    assert dry_run_commands(result.stdout) == bash_lines(tasks[name] for name in expected)


def test_repeated_T_combines_directories_and_files(run_cli, tmp_path):
    scripts = make_files(tmp_path / "scripts", ["s2.sh", "s1.sh"])
    tests = make_files(tmp_path / "tests", ["t1.sh"])
    config = make_files(tmp_path, ["config.json"], body="{}\n")

    result = run_cli(["-T", "./scripts", "-T", "./tests", "-T", "config.json", "-C", "bash @TASK@"])

    assert result.returncode == 0, result.stderr
    expected = sorted([*scripts.values(), *tests.values(), *config.values()], key=str)
    assert dry_run_commands(result.stdout) == bash_lines(expected)


@pytest.mark.parametrize(
    ("extensions", "expected"),
    [
        ("txt", ["c.txt"]),
        (".txt", ["c.txt"]),
        ("csv,tsv,txt", ["a.csv", "b.tsv", "c.txt"]),
    ],
)
def test_file_extension_filter(run_cli, tmp_path, extensions, expected):
    data = make_files(tmp_path / "data", ["a.csv", "b.tsv", "c.txt", "d.log", "e.sh", "txt"])

    result = run_cli(["-T", "./data", "--file-extension", extensions, "-C", "analyze @TASK@"])

    assert result.returncode == 0, result.stderr
    assert dry_run_commands(result.stdout, "analyze") == [f"analyze {data[name]}" for name in expected]


def test_a_source_that_yields_nothing_is_named_in_a_warning_and_the_rest_run(run_cli, tasks):
    result = run_cli(["-T", "tasks/*.sh", "-T", "tasks/*.xyz", "-C", "bash @TASK@"])

    assert result.returncode == 0, result.stderr
    assert dry_run_commands(result.stdout) == bash_lines(tasks[name] for name in ("a.sh", "b.sh", "c.sh"))
    assert result.stderr == ""
    (warning,) = result.warnings
    assert "tasks/*.xyz" in warning


def test_duplicates_are_removed_and_the_list_is_sorted(run_cli, run_files, tasks, tmp_path):
    sources = ["-T", "tasks/c.sh", "-T", "tasks", "-T", str(tasks["a.sh"]), "tasks/*.sh", "-T", "tasks/b.sh"]
    expected = [tasks[name] for name in ("a.sh", "b.sh", "c.sh", "notes.txt")]

    dry = run_cli([*sources, "-C", "bash @TASK@"])
    real = run_cli([*sources, "-C", "bash @TASK@", "-r", "-m", "2"])

    assert dry.returncode == 0, dry.stderr
    assert dry_run_commands(dry.stdout) == bash_lines(expected)
    assert real.returncode == 0, real.output
    rows = run_files().rows
    assert len(rows) == 4
    assert sorted(row["task_file"] for row in rows) == [str(path) for path in expected]
    assert {row["status"] for row in rows} == {"SUCCESS"}


# -- the workspace -------------------------------------------------------------------------------

RECORD_CWD = 'pwd > "cwd_$(basename "$0")"\n'


def test_shared_workspace_is_the_working_directory_of_every_task(run_cli, run_files, summary, home, tmp_path):
    tasks = make_files(tmp_path / "tasks", ["one.sh", "two.sh", "three.sh"], body=RECORD_CWD)

    result = run_cli(["-T", "tasks", "-C", "bash @TASK@", "-r", "-m", "3"])

    assert result.returncode == 0, result.output
    workspace = home / "parallelr" / "workspace"
    for name in tasks:
        recorded = (workspace / f"cwd_{name}").read_text().strip()
        assert os.path.realpath(recorded) == os.path.realpath(workspace)
    assert list(tmp_path.glob("cwd_*")) == []  # not the directory parallelr was started from
    assert summary(result.stdout, "- Working Dir:") == str(workspace)
    assert summary(result.stdout, "- Workspace Type:") == "Shared"
    assert len(run_files().rows) == 3


def test_isolated_workspace_gives_each_worker_its_own_directory(
    run_cli, run_files, summary, user_config, home, tmp_path
):
    user_config("execution:\n  workspace_isolation: true\n")
    names = ["t1.sh", "t2.sh", "t3.sh", "t4.sh"]
    tasks = make_files(tmp_path / "tasks", names, body=RECORD_CWD + "sleep 0.2\n")

    result = run_cli(["-T", "tasks", "-C", "bash @TASK@", "-r", "-m", "2"])

    assert result.returncode == 0, result.output
    assert summary(result.stdout, "- Workspace Type:") == "Isolated"
    files = run_files()
    assert int(summary(result.stdout, "- Process ID:")) == files.pid
    assert len(files.rows) == 4
    workspace = home / "parallelr" / "workspace"
    for row in files.rows:
        worker = int(row["worker_id"])
        assert worker in (1, 2)
        name = Path(row["task_file"]).name
        expected_dir = workspace / f"pid{files.pid}_worker{worker}"
        recorded = (expected_dir / f"cwd_{name}").read_text().strip()
        assert os.path.realpath(recorded) == os.path.realpath(expected_dir)
    assert sorted(Path(row["task_file"]).name for row in files.rows) == sorted(tasks)
    assert list(workspace.glob("cwd_*")) == []  # nothing landed in the shared directory


# -- the spec's "Basic Examples" -----------------------------------------------------------------


@pytest.fixture
def example_tree(tmp_path: Path, fake_programs) -> Path:
    """The layout the spec's examples assume, in the directory parallelr is started from."""
    make_files(tmp_path / "tasks", ["t1.py", "t2.py"], body="print('hello from a python task')\n")
    make_files(tmp_path / "tasks", ["n1.txt", "n2.txt"], body="# data (and valid Python)\n")
    make_files(tmp_path / "scripts", ["s1.sh", "s2.sh"], body="echo script\n")
    make_files(tmp_path / "tests", ["t.sh"], body="echo test\n")
    make_files(tmp_path, ["config.json"], body="{}\n")
    make_files(tmp_path / "data", ["a.csv", "b.tsv", "c.txt", "d.log"], body="1\n")
    process = make_files(tmp_path, ["process.sh"], body='#!/bin/sh\nexec process "$@"\n')["process.sh"]
    process.chmod(0o755)
    fake_programs.add("process", "analyze", "curl")
    return tmp_path


SPEC_EXAMPLES = {
    "python3 with 5 workers": (
        ["-T", "./tasks", "-C", "python3 @TASK@", "-r", "-m", "5"], {}, ["t1.py", "t2.py", "n1.txt", "n2.txt"]
    ),
    "only txt": (
        ["-T", "./tasks", "--file-extension", "txt", "-C", "process @TASK@", "-r"],
        {"process": ["tasks/n1.txt", "tasks/n2.txt"]}, ["n1.txt", "n2.txt"],
    ),
    "shell-expanded glob": (
        ["-T", "./tasks/t1.py", "./tasks/t2.py", "-C", "python3 @TASK@", "-r"], {}, ["t1.py", "t2.py"]
    ),
    "several sources": (
        ["-T", "./scripts", "-T", "./tests", "-T", "config.json", "-C", "process @TASK@", "-r"],
        {"process": ["config.json", "scripts/s1.sh", "scripts/s2.sh", "tests/t.sh"]},
        ["config.json", "s1.sh", "s2.sh", "t.sh"],
    ),
    "several extensions": (
        ["-T", "./data", "--file-extension", "csv,tsv,txt", "-C", "analyze @TASK@", "-r"],
        {"analyze": ["data/a.csv", "data/b.tsv", "data/c.txt"]}, ["a.csv", "b.tsv", "c.txt"],
    ),
    "bash with timeout": (
        ["-T", "./scripts", "-C", "bash @TASK@", "-r", "-t", "600"], {}, ["s1.sh", "s2.sh"]
    ),
    "throttled curl": (
        ["-T", "./tasks", "--file-extension", "txt", "-C", "curl @TASK@", "-r", "-s", "0.2"],
        {"curl": ["tasks/n1.txt", "tasks/n2.txt"]}, ["n1.txt", "n2.txt"],
    ),
    "relative program without output log": (
        ["-T", "./tasks", "--file-extension", "txt", "-C", "./process.sh @TASK@", "-r",
         "--no-task-output-log"],
        {"process": ["tasks/n1.txt", "tasks/n2.txt"]}, ["n1.txt", "n2.txt"],
    ),
}


@pytest.mark.parametrize("example", sorted(SPEC_EXAMPLES))
def test_spec_basic_examples_run(run_cli, run_files, fake_programs, example_tree, example):
    argv, calls, task_names = SPEC_EXAMPLES[example]

    result = run_cli(argv, env=fake_programs.env)

    assert result.returncode == 0, result.output
    rows = run_files().rows
    assert sorted(Path(row["task_file"]).name for row in rows) == sorted(task_names)
    assert {(row["status"], row["exit_code"]) for row in rows} == {("SUCCESS", "0")}
    for program, paths in calls.items():
        recorded = sorted(call["argv"] for call in fake_programs.calls(program))
        assert recorded == [[str(example_tree / path)] for path in paths]
