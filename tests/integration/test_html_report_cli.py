"""``--html-report PATH`` and ``parallelr runs show RUN_ID|last --html PATH`` through the real CLI:
a run with SUCCESS, FAILED, TIMEOUT and retried tasks (ANSI codes, NUL and other bytes, a huge
output and markup in a task's name and output among them), read back with html.parser, with
ElementTree on the SVG and json on the table's data; the same page from the journal; and the
one-line errors (a missing directory, a directory in the way, an unknown run, a bad combination).

(Named ``..._cli`` because tests/unit/test_html_report.py exists: pytest needs unique basenames.)
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any, List, Tuple

import pytest
from html_support import Page

XSS_NAME = "<img src=x onerror=alert(1)>.sh"
XSS_OUTPUT = "<script>alert(2)</script>"
RUN = ["-C", "bash @TASK@", "-r", "-m", "3", "-t", "1", "--retries", "1", "--retry-delay", "0.1"]
# task -> (status, attempts); every failure is retried once
EXPECTED = {
    "ok1.sh": ("SUCCESS", 1), "ok2.sh": ("SUCCESS", 1), "flaky.sh": ("SUCCESS", 2),
    "bad.sh": ("FAILED", 2), "ansi.sh": ("FAILED", 2), "huge.sh": ("FAILED", 2), XSS_NAME: ("FAILED", 2),
    "slow.sh": ("TIMEOUT", 2),
}


def read_page(path: Path) -> Tuple[str, Page]:
    text = path.read_bytes().decode("utf-8")  # strict: valid UTF-8
    return text, Page(text)


def bars(text: str) -> List[ElementTree.Element]:
    (svg,) = re.findall(r"<svg .*?</svg>", text, re.S)
    return [element for element in ElementTree.fromstring(svg).iter("rect")]


@pytest.fixture
def task_dir(tmp_path: Path) -> Path:
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    scripts = {
        "ok1.sh": "echo one\n", "ok2.sh": "echo two\n",
        "flaky.sh": f"if [ -e {tmp_path}/flaky.done ]; then echo second; else touch {tmp_path}/flaky.done;"
                    " echo first; exit 1; fi\n",
        "bad.sh": "echo bad-out; echo bad-err >&2; exit 3\n",
        "ansi.sh": "printf '\\033[31mred\\000nul \\377\\376 bytes\\n'; exit 2\n",
        "huge.sh": "head -c 3000000 /dev/zero | tr '\\0' x; exit 4\n",
        XSS_NAME: f"echo '{XSS_OUTPUT}'; echo '<img src=x onerror=alert(1)>' >&2; exit 1\n",
        "slow.sh": "sleep 5\n",
    }
    for name, body in scripts.items():
        (tasks / name).write_text(body)
    return tasks


def test_a_run_and_the_journal_give_one_page_with_a_bar_per_attempt(
        tmp_path: Path, run_cli: Any, task_dir: Path) -> None:
    folder = tmp_path / "report dir ü"
    folder.mkdir()
    report = folder / "rapport $(touch pwned) ü.html"
    result = run_cli(["-T", str(task_dir), *RUN, "--html-report", str(report)])
    assert result.returncode == 1, result.output
    assert not (tmp_path / "pwned").exists()
    assert sorted(path.name for path in folder.iterdir()) == [report.name]  # no part file, no spool
    text, page = read_page(report)

    # the table: one row per task, its status and attempts; one bar per attempt
    rows = page.rows()
    by_name = {Path(row[1]).name: row for row in rows}
    assert {name: (row[3], row[4]) for name, row in by_name.items()} == EXPECTED
    drawn = bars(text)
    attempts = sum(count for _status, count in EXPECTED.values())
    assert len(drawn) == text.count('<rect class="bar ') == attempts == 14
    assert sorted(bar.get("class") for bar in drawn) == sorted(
        ["bar ok"] * 3 + ["bar failed"] * 9 + ["bar timeout"] * 2)
    assert page.counts() == ["8 tasks", "3 SUCCESS", "4 FAILED", "1 TIMEOUT", "14 attempts"]
    flaky = [bar.findtext("title") for bar in drawn if (bar.findtext("title") or "").find("flaky.sh") >= 0]
    assert sorted(re.sub(r"\d+\.\d\d s", "T s", tip) for tip in flaky) == sorted([  # type: ignore[arg-type]
        f"#{by_name['flaky.sh'][0]} {task_dir / 'flaky.sh'} (attempt 1): FAILED, T s, exit code 1",
        f"#{by_name['flaky.sh'][0]} {task_dir / 'flaky.sh'} (attempt 2): SUCCESS, T s, exit code 0"])

    # the summary block as the console printed it
    lines = result.stdout.splitlines()
    block = lines[lines.index("Parallel Task Execution Summary"):]
    assert page.texts["pre.summary"] == ["\n".join(block) + "\n"]

    # the output tails of the failed tasks (a <details id="output-N"> each); markup, ANSI, NUL as text
    failed = sorted(name for name, (status, _n) in EXPECTED.items() if status != "SUCCESS")
    assert {key for key in page.texts if key.startswith("#output-")} == {
        f"#output-{by_name[name][0]}" for name in failed}
    outputs = {Path(summary.split(" ", 2)[2].split(":")[0]).name: summary
               for summary in page.texts["summary"]}
    assert sorted(outputs) == failed
    assert outputs["bad.sh"].endswith(": Exit code 3 (2 attempt(s))")
    tail_out, tail_err = page.texts["pre.tail stdout"], page.texts["pre.tail stderr"]
    assert "bad-out\n" in tail_out and "bad-err\n" in tail_err
    assert f"{XSS_OUTPUT}\n" in tail_out and "<img src=x onerror=alert(1)>\n" in tail_err
    assert "x" * 1000 in tail_out and all(len(tail) <= 1000 for tail in tail_out)  # max_output_capture
    (ansi,) = [tail for tail in tail_out if "red" in tail]
    assert ansi.startswith("\\x1b[31mred\\x00nul ") and ansi.endswith(" bytes\n")
    assert not re.search(rb"[\x00-\x08\x0b-\x1f\x7f]", report.read_bytes())
    assert "img" not in [tag for tag, _attributes in page.tags]
    assert [tag for tag, _attributes in page.tags].count("script") == 2
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", text)

    # the same page from the journal
    from_journal = folder / "from the journal ü.html"
    shown = run_cli(["runs", "show", "last", "--html", str(from_journal)])
    assert (shown.returncode, shown.stdout, shown.stderr) == (0, f"HTML report: {from_journal}\n", "")
    journal_text, journal_page = read_page(from_journal)
    assert journal_page.counts() == page.counts()
    assert len(bars(journal_text)) == attempts
    assert sorted(bar.findtext("title") for bar in bars(journal_text)) == sorted(
        bar.findtext("title") for bar in drawn)
    assert sorted(row[:8] for row in journal_page.rows()) == sorted(row[:8] for row in rows)
    assert {row[11] for row in journal_page.rows()} == {row[11] for row in rows}  # the errors
    # the same failed tasks, in the same words
    assert sorted(journal_page.texts["summary"]) == sorted(page.texts["summary"])
    assert "pre.tail stdout" not in journal_page.texts  # the journal keeps no output
    assert any("keeps no task output" in note for note in journal_page.texts["p.note"])
    assert "Run ID:     " + block[2].split(": ", 1)[1] in journal_page.texts["pre.summary"][0]


def test_a_dry_run_writes_no_report(tmp_path: Path, run_cli: Any, task_dir: Path) -> None:
    report = tmp_path / "dry.html"
    result = run_cli(["-T", str(task_dir), "-C", "bash @TASK@", "--html-report", str(report)])
    assert result.returncode == 0, result.output
    assert not report.exists() and not list(tmp_path.glob("*.part-*"))


def test_a_missing_directory_or_a_directory_in_the_way_stops_the_run_before_a_task(
        tmp_path: Path, run_cli: Any) -> None:
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "a.sh").write_text(f"touch {tmp_path / 'ran'}\n")
    missing = tmp_path / "no such dir" / "report.html"
    result = run_cli(["-T", str(tasks), "-C", "bash @TASK@", "-r", "--html-report", str(missing)])
    assert (result.returncode, result.stderr) == (
        1, f"parallelr: error: cannot write the HTML report {missing}: No such file or directory\n")
    in_the_way = tmp_path / "a directory.html"
    in_the_way.mkdir()
    result = run_cli(["-T", str(tasks), "-C", "bash @TASK@", "-r", "--html-report", str(in_the_way)])
    assert (result.returncode, result.stderr) == (
        1, f"parallelr: error: cannot write the HTML report {in_the_way}: Is a directory\n")
    assert not (tmp_path / "ran").exists()  # refused before the first task, both times
    assert list(in_the_way.iterdir()) == []


def test_runs_show_html_errors_are_one_line(tmp_path: Path, run_cli: Any) -> None:
    report = tmp_path / "r.html"
    nothing = run_cli(["runs", "show", "last", "--html", str(report)])
    assert nothing.returncode == 2
    assert nothing.stderr.startswith("parallelr: error: no run is recorded yet (journal ")
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "a.sh").write_text("echo a\n")
    assert run_cli(["-T", str(tasks), "-C", "bash @TASK@", "-r"]).returncode == 0
    unknown = run_cli(["runs", "show", "no-such-run", "--html", str(report)])
    assert unknown.returncode == 2 and len(unknown.stderr.splitlines()) == 1
    assert unknown.stderr.startswith("parallelr: error: unknown run 'no-such-run' (journal ")
    missing = tmp_path / "missing" / "r.html"
    result = run_cli(["runs", "show", "last", "--html", str(missing)])
    assert (result.returncode, result.stdout, result.stderr) == (
        1, "", f"parallelr: error: cannot write the HTML report {missing}: No such file or directory\n")
    states = run_cli(["runs", "show", "last", "--html", str(report), "--state", "dead"])
    assert (states.returncode, states.stderr) == (
        2, "parallelr: error: --html reports every task of the run; it takes no --state\n")
    both = run_cli(["runs", "show", "last", "--html", str(report), "--json"])
    assert both.returncode == 2 and "not allowed with argument" in both.stderr
    assert not report.exists() and sorted(path.name for path in tmp_path.iterdir()) == ["home", "tasks"]


def test_a_full_disk_is_one_line_and_keeps_the_old_report(
        tmp_path: Path, run_cli: Any, task_dir: Path) -> None:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    disk = tmp_path / "tiny"
    disk.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(disk)], capture_output=True,
                          text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    try:
        report = disk / "report.html"
        report.write_text("the old report\n")
        (task_dir / "slow.sh").unlink()
        result = run_cli(["-T", str(task_dir), *RUN, "--html-report", str(report)])
        assert result.returncode == 1
        assert result.stderr == (
            f"parallelr: error: cannot write the HTML report {report}: No space left on device\n")
        assert "Parallel Task Execution Summary" in result.stdout  # the run ended with its summary
        assert report.read_text() == "the old report\n"
        assert sorted(path.name for path in disk.iterdir()) == ["report.html"]
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
