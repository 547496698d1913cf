"""``--junit-xml PATH`` through the real CLI, read back with a real JUnit parser (junitparser): one
suite per run, one case per task with its status, the output tail of a failure (ANSI codes and
NUL bytes included: the file still parses), cancelled tasks as skipped, arguments-mode names,
and no report for a dry run or into a missing directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

from junitparser import Failure, JUnitXml, Skipped


def cases(path: Path) -> Dict[str, Any]:
    xml = JUnitXml.fromfile(str(path))
    (suite,) = list(xml)
    return {"suite": suite, "cases": {case.name: case for case in suite}}


def results_of(case: Any) -> List[Any]:
    return list(case.result)


def test_a_run_is_one_suite_with_a_case_per_task(tmp_path: Path, run_cli: Any, summary: Any) -> None:
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "ok.sh").write_text("echo fine\n")
    (tasks / "colour.sh").write_text('printf "\\033[31mred\\000after the nul\\n"; echo oops >&2; exit 3\n')
    (tasks / "slow.sh").write_text("sleep 5\n")
    (tasks / "xml.sh").write_text('echo "<b>&\\"tag\\"</b>"; exit 1\n')
    report = tmp_path / "report dir" / "junit report.xml"
    report.parent.mkdir()
    result = run_cli(["-T", str(tasks), "-C", "bash @TASK@", "-r", "-t", "1", "-m", "4",
                      "--junit-xml", str(report)])
    assert result.returncode == 1, result.output
    run_id = summary(result.stdout, "Run ID:")

    read = cases(report)
    suite = read["suite"]
    assert (suite.tests, suite.failures, suite.errors, suite.skipped) == (4, 3, 0, 0)
    assert suite.name == "parallelr bash @TASK@"
    by_name = read["cases"]
    names = ("ok.sh", "colour.sh", "slow.sh", "xml.sh")
    assert sorted(by_name) == sorted(str(tasks / name) for name in names)
    assert {case.classname for case in by_name.values()} == {f"parallelr.{run_id}"}
    assert results_of(by_name[str(tasks / "ok.sh")]) == []

    (colour,) = results_of(by_name[str(tasks / "colour.sh")])
    assert isinstance(colour, Failure)
    assert (colour.type, colour.message) == ("FAILED", "FAILED: Exit code 3")
    assert colour.text == "\ufffd[31mred\ufffdafter the nul\n\noops\n"  # ESC and NUL cannot be XML

    (slow,) = results_of(by_name[str(tasks / "slow.sh")])
    assert (slow.type, slow.message) == ("TIMEOUT", "TIMEOUT: Timeout after 1s")
    assert by_name[str(tasks / "slow.sh")].time >= 0.9

    (markup,) = results_of(by_name[str(tasks / "xml.sh")])
    assert markup.text == '<b>&"tag"</b>\n'  # escaped in the file, the same text when parsed
    assert not list(report.parent.glob("*.part-*")) and not list(report.parent.glob("*.new-*"))


def test_cancelled_tasks_are_skipped_and_arguments_name_their_cases(tmp_path: Path, run_cli: Any) -> None:
    lines = tmp_path / "hosts.txt"
    lines.write_text("".join(f"host{number} exit1\n" for number in range(1, 8)))
    report = tmp_path / "junit.xml"
    result = run_cli(["-A", str(lines), "-S", "space", "-C", "sh -c 'exit 1' @ARG_1@", "-r", "-m", "1",
                      "--enable-stop-limits", "--junit-xml", str(report)])
    assert result.returncode == 1, result.output
    read = cases(report)
    suite = read["suite"]
    assert (suite.tests, suite.failures, suite.skipped) == (7, 5, 2)
    skipped = sorted(name for name, case in read["cases"].items()
                     if [type(outcome) for outcome in results_of(case)] == [Skipped])
    assert skipped == ["host6 exit1", "host7 exit1"]  # arguments-only mode: the line names the task


def test_no_report_for_a_dry_run_and_one_line_for_a_missing_directory(tmp_path: Path, run_cli: Any) -> None:
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "a.sh").write_text(f"touch {tmp_path / 'ran'}\n")
    dry = run_cli(["-T", str(tasks), "-C", "bash @TASK@", "--junit-xml", str(tmp_path / "dry.xml")])
    assert dry.returncode == 0, dry.output
    assert not (tmp_path / "dry.xml").exists()

    missing = tmp_path / "no such dir" / "junit.xml"
    result = run_cli(["-T", str(tasks), "-C", "bash @TASK@", "-r", "--junit-xml", str(missing)])
    assert result.returncode == 1
    assert result.stderr == (
        f"parallelr: error: cannot write the JUnit XML report {missing}: No such file or directory\n")
    assert not (tmp_path / "ran").exists()  # refused before the first task
