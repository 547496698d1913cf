"""The example third-party reporter (examples/reporter) installs with pip and plugs into the real CLI.

It is installed into a private --target directory and found only through PYTHONPATH, exactly as a
user's pip install would be found: through its entry point in the group ``parallelr``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "reporter"
TASKS = {
    "a_ok.sh": "echo first\n",
    "b_fails.sh": "echo second >&2\nexit 3\n",
    "c_ok.sh": "echo third\n",
}


@pytest.fixture(scope="module")
def site_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("jsonl")
    target = base / "site"
    source = base / "reporter"
    shutil.copytree(str(EXAMPLE), str(source))  # setuptools builds in the source tree: keep the repo clean
    completed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
         "--disable-pip-version-check", "--target", str(target), str(source)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300,
    )
    if completed.returncode != 0:
        # The test extra installs setuptools and wheel, which this offline build needs: a missing
        # build tool is a broken test environment, not a reason to skip.
        lines = [line.strip() for line in completed.stdout.splitlines() if line.strip()]
        errors = [line for line in lines if line.lower().startswith("error")] or lines[-1:]
        pytest.fail(
            "pip cannot build the example reporter offline (install the test extra: setuptools and "
            "wheel are needed without build isolation): " + " | ".join(errors[:2])
        )
    assert (target / "parallelr_jsonl.py").is_file()
    return target


@pytest.fixture()
def workdir(tmp_path: Path) -> Path:
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    for name, body in TASKS.items():
        (tasks / name).write_text(body)
    (tmp_path / "home").mkdir()
    return tmp_path


def _env(home: Path, site: Path) -> Dict[str, str]:
    env = dict(os.environ)
    env["HOME"] = str(home)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    return env


def _parallelr(workdir: Path, site: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "parallelr", *args],
        cwd=str(workdir), env=_env(workdir / "home", site),
        capture_output=True, text=True, timeout=120,
    )


def _run_tasks(workdir: Path, site: Path, *extra: str) -> subprocess.CompletedProcess:
    tasks = str(workdir / "tasks")
    return _parallelr(workdir, site, "-T", tasks, "-C", "bash @TASK@", "-r", "-m", "3", *extra)


def _read_jsonl(path: Path) -> List[dict]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def _assert_three_results(records: List[dict], workdir: Path) -> None:
    assert len(records) == 3
    by_name = {Path(record["source"]).name: record for record in records}
    assert set(by_name) == set(TASKS)
    for name, record in by_name.items():
        assert record["source"] == str(workdir / "tasks" / name)
        assert 1 <= record["worker_id"] <= 3
        assert record["attempt"] == 1
        assert record["duration"] >= 0
    assert (by_name["a_ok.sh"]["status"], by_name["a_ok.sh"]["exit_code"]) == ("SUCCESS", 0)
    assert (by_name["b_fails.sh"]["status"], by_name["b_fails.sh"]["exit_code"]) == ("FAILED", 3)
    assert (by_name["c_ok.sh"]["status"], by_name["c_ok.sh"]["exit_code"]) == ("SUCCESS", 0)
    assert sorted(record["index"] for record in records) == [1, 2, 3]


def test_jsonl_written_next_to_the_summary_csv(workdir: Path, site_dir: Path) -> None:
    completed = _run_tasks(workdir, site_dir)

    assert completed.returncode == 1, completed.stderr  # one task failed
    log_dir = workdir / "home" / "parallelr" / "logs"
    summaries = sorted(log_dir.glob("parallelr_*_summary.csv"))
    results = sorted(log_dir.glob("*_tasks.jsonl"))
    assert len(summaries) == 1 and len(results) == 1
    assert results[0].name == summaries[0].name.replace("_summary.csv", "_tasks.jsonl")
    _assert_three_results(_read_jsonl(results[0]), workdir)


def test_jsonl_option_chooses_the_path(workdir: Path, site_dir: Path) -> None:
    chosen = workdir / "out" / "results.jsonl"

    completed = _run_tasks(workdir, site_dir, "--jsonl", str(chosen))

    assert completed.returncode == 1, completed.stderr
    _assert_three_results(_read_jsonl(chosen), workdir)
    assert list((workdir / "home" / "parallelr" / "logs").glob("*_tasks.jsonl")) == []


def test_version_lists_the_jsonl_plugin(workdir: Path, site_dir: Path) -> None:
    completed = _parallelr(workdir, site_dir, "--version")

    assert completed.returncode == 0, completed.stderr
    listed = re.search(r"(^|[ ,])jsonl-0\.1\.0 \(from parallelr-jsonl-reporter\)", completed.stdout)
    assert listed, completed.stdout


def test_blocked_plugin_writes_nothing(workdir: Path, site_dir: Path) -> None:
    completed = _run_tasks(workdir, site_dir, "-p", "no:jsonl")

    assert completed.returncode == 1, completed.stderr
    log_dir = workdir / "home" / "parallelr" / "logs"
    assert len(list(log_dir.glob("parallelr_*_summary.csv"))) == 1  # the run did happen
    assert list(log_dir.glob("*_tasks.jsonl")) == []  # (the built-in ..._results.jsonl is not its)


def test_blocked_plugin_has_no_jsonl_option(workdir: Path, site_dir: Path) -> None:
    completed = _run_tasks(workdir, site_dir, "-p", "no:jsonl", "--jsonl", str(workdir / "x.jsonl"))

    assert completed.returncode == 2
    assert "--jsonl" in completed.stderr
    assert "Traceback" not in completed.stderr
    assert not (workdir / "x.jsonl").exists()
    assert not (workdir / "home" / "parallelr" / "logs").exists()


def test_blocked_plugin_is_reported_by_version(workdir: Path, site_dir: Path) -> None:
    completed = _parallelr(workdir, site_dir, "-p", "no:jsonl", "--version")

    assert completed.returncode == 0, completed.stderr
    assert "blocked: jsonl" in completed.stdout
    assert "jsonl-0.1.0" not in completed.stdout
