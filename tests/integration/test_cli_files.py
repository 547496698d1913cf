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


@pytest.mark.parametrize("pattern", ["tasks/*.sh", "{tmp}/tasks/[ab].sh"])
def test_quoted_glob_pattern_is_expanded_by_parallelr(run_cli, tasks, tmp_path, pattern):
    expected = ["a.sh", "b.sh", "c.sh"] if "*" in pattern else ["a.sh", "b.sh"]

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
        ("csv,tsv,txt", ["a.csv", "b.tsv", "c.txt"]),
    ],
)
def test_file_extension_filter(run_cli, tmp_path, extensions, expected):
    data = make_files(tmp_path / "data", ["a.csv", "b.tsv", "c.txt", "d.log", "e.sh", "txt"])

    result = run_cli(["-T", "./data", "--file-extension", extensions, "-C", "analyze @TASK@"])

    assert result.returncode == 0, result.stderr
    assert dry_run_commands(result.stdout, "analyze") == [f"analyze {data[name]}" for name in expected]


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
