"""ptasker (and ``parallelr --preset ptasker``) through the real CLI, with a fake ``tasker`` on PATH.

Spec: parallelr-README.md "Quick Start for TASKER Users" and "ptasker Integration"; COMPAT.md
(ptasker's files use ``ptasker`` in place of ``parallelr``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List

import pytest

PROJECT_ID = re.compile(r"parallelr_[0-9a-f]{6}")
STEM = re.compile(r"ptasker_\d+_\d\d[A-Z][a-z]{2}\d\d_\d{6}")


@pytest.fixture
def tasker(fake_programs):
    fake_programs.add("tasker")
    return fake_programs


@pytest.fixture
def cases(tmp_path: Path) -> Dict[str, Path]:
    directory = tmp_path / "test_cases"
    directory.mkdir()
    made = {}
    for name in ("case_b.txt", "case_a.txt", "notes.md"):
        path = directory / name
        path.write_text("# a TASKER test case\n", encoding="utf-8")
        made[name] = path
    return made


def tasker_argvs(fakes) -> List[List[str]]:
    return sorted(call["argv"] for call in fakes.calls("tasker"))


def test_ptasker_runs_tasker_with_an_auto_project_id(run_cli, run_files, tasker, cases, home):
    result = run_cli(["-T", str(cases["case_a.txt"].parent), "-r"], prog="ptasker", env=tasker.env)

    assert result.returncode == 0, result.output
    argvs = tasker_argvs(tasker)
    names = ("case_a.txt", "case_b.txt", "notes.md")
    assert [argv[0] for argv in argvs] == [str(cases[name]) for name in names]
    projects = {argv[2] for argv in argvs}
    assert len(projects) == 1  # one project ID for the whole run
    (project,) = projects
    assert PROJECT_ID.fullmatch(project), project
    assert all(argv == [argv[0], "-p", project, "-r"] for argv in argvs)
    # ptasker keeps its files under ~/ptasker, named ptasker_*
    logs = home / "ptasker" / "logs"
    written = sorted(path.name for path in logs.iterdir())
    assert len(written) == 4 and all(STEM.match(name) for name in written), written
    assert not (home / "parallelr").exists()
    files = run_files("ptasker")
    commands = sorted(row["command"] for row in files.rows)
    assert commands == [f"tasker {cases[name]} -p {project} -r" for name in names]
    workspace = home / "ptasker" / "workspace"
    assert {call["cwd"] for call in tasker.calls("tasker")} == {str(workspace)}


def test_each_ptasker_run_gets_a_new_project_id(run_cli, tasker, cases):
    first = run_cli(["-T", str(cases["case_a.txt"])], prog="ptasker", env=tasker.env)
    second = run_cli(["-T", str(cases["case_a.txt"])], prog="ptasker", env=tasker.env)

    ids = [PROJECT_ID.findall(result.stdout) for result in (first, second)]
    assert [len(found) for found in ids] == [1, 1], (first.stdout, second.stdout)
    assert ids[0] != ids[1]
    assert tasker.calls() == []  # dry runs


def test_ptasker_with_a_project_name_and_extension_filter(run_cli, tasker, cases):
    directory = str(cases["case_a.txt"].parent)

    result = run_cli(["-T", directory, "--file-extension", "txt", "-p", "myproject", "-r"], prog="ptasker",
                     env=tasker.env)

    assert result.returncode == 0, result.output
    assert tasker_argvs(tasker) == [
        [str(cases[name]), "-p", "myproject", "-r"] for name in ("case_a.txt", "case_b.txt")
    ]


def test_ptasker_dry_run_shows_the_tasker_commands(run_cli, tasker, cases, home):
    result = run_cli(["-T", str(cases["case_a.txt"]), "-p", "myproject"], prog="ptasker", env=tasker.env)

    assert result.returncode == 0, result.stderr
    assert "DRY RUN MODE" in result.stdout
    assert f"tasker {cases['case_a.txt']} -p myproject -r" in result.stdout.splitlines()
    assert tasker.calls() == []
    assert list(home.rglob("*")) == []


def test_ptasker_with_arguments_file_sets_hostname(run_cli, run_files, tasker, cases, tmp_path):
    hosts = ["host1.example.com", "host2.example.com"]
    (tmp_path / "hostnames.txt").write_text("\n".join(hosts) + "\n", encoding="utf-8")
    template = cases["case_a.txt"]

    result = run_cli(["-T", str(template), "-A", "hostnames.txt", "-p", "myproject", "-r"], prog="ptasker",
                     env=tasker.env)

    assert result.returncode == 0, result.output
    calls = tasker.calls("tasker")
    assert sorted(call["env"]["HOSTNAME"] for call in calls) == hosts
    assert all(call["argv"] == [str(template), "-p", "myproject", "-r"] for call in calls)
    assert len(run_files("ptasker").rows) == 2


def test_parallelr_preset_ptasker_is_equivalent(run_cli, tasker, cases, home):
    directory = str(cases["case_a.txt"].parent)

    via_preset = run_cli(["--preset", "ptasker", "-T", directory, "-p", "myproject", "-r"], env=tasker.env)
    preset_calls = tasker_argvs(tasker)
    for path in tasker.calls_dir.iterdir():
        path.unlink()
    via_ptasker = run_cli(["-T", directory, "-p", "myproject", "-r"], prog="ptasker", env=tasker.env)

    assert via_preset.returncode == 0, via_preset.output
    assert via_ptasker.returncode == 0, via_ptasker.output
    assert len(preset_calls) == 3
    assert preset_calls == tasker_argvs(tasker)
    logs = sorted(path.name for path in (home / "ptasker" / "logs").iterdir())
    assert len(logs) == 8 and all(name.startswith("ptasker_") for name in logs), logs
    assert not (home / "parallelr").exists()
