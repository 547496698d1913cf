"""The HTML report's renderer (parallelr.html_report) and the timeline layout it draws with
(parallelr.timeline), without a run: pages rendered from small streams of items into tmp_path and
read back with html.parser, ElementTree (the SVG) and json (the table's data). Escaping of markup,
quotes, ``</script>`` in the JSON block, ANSI and NUL; the bounds for big runs; the part file and
the rename; failed writes (a directory in the way, a missing directory, a full disk)."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import attrs
import pytest
from disk_support import tmpfs
from html_support import Page
from test_jobs_sqlite import run_info

from parallelr import html_report, timeline
from parallelr.errors import WriteError
from parallelr.html_report import Attempt, Bounds, Output, RunFacts, TaskRow, write_report
from parallelr.model import RunSummary, Task, TaskResult, TaskStatus
from parallelr.plugins.reporters.html_report import HtmlReporter
from parallelr.report import iso_seconds, summary_lines

T = 1_800_000_000.0
HOSTILE = "<script>alert(1)</script> </script><!-- \"quoted\" 'single' & <img src=x onerror=alert(2)>"
CONTROLS = "red \x1b[31mcolour\x1b[0m nul\x00 bell\x07 cr\r del\x7f c1\x85 sep\u2028 lone\udcff"
CLEANED = "red \\x1b[31mcolour\\x1b[0m nul\\x00 bell\\x07 cr\\r del\\x7f c1\\x85 sep\\u2028 lone\\udcff"


def facts(**changes: Any) -> RunFacts:
    values: Dict[str, Any] = {"title": "parallelr run R1", "command": "bash @TASK@", "started_at": T,
                              "ended_at": T + 60, "origin": "this run", "output_log": "/logs/out.txt",
                              "generated_at": T + 61}
    values.update(changes)
    return RunFacts(**values)


def attempt(position: int, number: int = 1, status: str = "SUCCESS", slot: int = 1, start: float = 0.0,
            length: float = 1.0, task: Optional[str] = None) -> Attempt:
    return Attempt(position=position, task=task or f"/t/{position}.sh", attempt=number, status=status,
                   worker_id=slot, exit_code=0 if status == "SUCCESS" else 1, started_at=T + start,
                   ended_at=T + start + length)


def row(position: int, status: str = "SUCCESS", attempts: int = 1, task: Optional[str] = None,
        arguments: Sequence[str] = (), error: str = "", duration: float = 1.0) -> TaskRow:
    return TaskRow(position=position, task=task or f"/t/{position}.sh", arguments=tuple(arguments),
                   status=status, attempts=attempts, worker_id=1, exit_code=0 if status == "SUCCESS" else 1,
                   started_at=T, duration=duration, memory_mb=1.25, cpu_percent=50.0, error=error)


def output(position: int, stdout: Optional[str] = "out\n", stderr: Optional[str] = "err\n",
           status: str = "FAILED", task: Optional[str] = None) -> Output:
    return Output(position=position, task=task or f"/t/{position}.sh", arguments=(), status=status,
                  attempts=1, exit_code=1, error="Exit code 1", stdout=stdout, stderr=stderr)


def render(tmp_path: Path, items: Sequence[Any], summary: Sequence[str] = ("Total Tasks: 1",),
           name: str = "report.html", **kwargs: Any) -> Tuple[Path, str, Page]:
    path = tmp_path / name
    write_report(str(path), kwargs.pop("facts", None) or facts(), summary, items, **kwargs)
    raw = path.read_bytes()
    text = raw.decode("utf-8")  # strict: the file is valid UTF-8
    return path, text, Page(text)


def svg_of(text: str) -> ElementTree.Element:
    match = re.search(r"<svg .*?</svg>", text, re.S)
    assert match, "no timeline"
    return ElementTree.fromstring(match.group())


# -- values -------------------------------------------------------------------------------------
def test_values_from_the_run_are_cleaned_of_controls_and_lone_surrogates() -> None:
    assert html_report.clean(CONTROLS) == CLEANED
    assert html_report.clean("line one\n\ttabbed") == "line one\n\ttabbed"  # newlines and tabs stay
    assert html_report.clean(None) == "" and html_report.clean(3) == "3"
    cleaned = row(1, task=CONTROLS, arguments=(CONTROLS, "b"), error=CONTROLS)
    assert (cleaned.task, cleaned.arguments, cleaned.error) == (CLEANED, (CLEANED, "b"), CLEANED)
    assert output(1, stdout=CONTROLS, stderr=None).stdout == CLEANED
    assert output(1, stderr=None).stderr is None  # not recorded stays None, not ""
    assert facts(title=CONTROLS, notes=(CONTROLS,)).notes == (CLEANED,)


# -- escaping -----------------------------------------------------------------------------------
def test_markup_quotes_and_script_ends_from_the_run_stay_text(tmp_path: Path) -> None:
    items = [attempt(1, status="FAILED", task=HOSTILE), row(1, "FAILED", task=HOSTILE, arguments=(HOSTILE,),
                                                              error=HOSTILE),
             output(1, stdout=HOSTILE, stderr=HOSTILE, task=HOSTILE),
             attempt(2, status=HOSTILE), row(2, HOSTILE)]
    hostile_facts = facts(title=HOSTILE, command=HOSTILE, output_log=HOSTILE, notes=(HOSTILE,))
    _path, text, page = render(tmp_path, items, summary=[HOSTILE], facts=hostile_facts)
    tags = [tag for tag, _attributes in page.tags]
    assert "img" not in tags and "svg" in tags
    assert tags.count("script") == 2  # the data block and the page's own script, nothing else
    assert [attributes for attributes, _text in page.scripts] == [
        {"type": "application/json", "id": "task-data"}, {}]
    assert not [(tag, name) for tag, attributes in page.tags for name in attributes if name.startswith("on")]
    assert text.count("</script>") == 2
    # every place a value lands gives it back as the same text
    assert page.texts["title"][0] == HOSTILE and page.texts["h1"] == [HOSTILE]  # then the bars' titles
    assert page.texts["pre.summary"] == [HOSTILE + "\n"]
    assert page.texts["pre.tail stdout"] == [HOSTILE] and page.texts["pre.tail stderr"] == [HOSTILE]
    rows = page.rows()
    assert rows[0][1:4] == [HOSTILE, HOSTILE, "FAILED"] and rows[0][11] == HOSTILE
    assert rows[1][3] == HOSTILE
    (block,) = [body for attributes, body in page.scripts if attributes.get("id") == "task-data"]
    assert "<" not in block and "'" not in block and "&" not in block  # tojson's \u003c, \u0027, \u0026
    # a status that is not one of the known ones gets the class "other", never the data as a class
    bars = list(svg_of(text).iter("rect"))
    assert sorted(bar.get("class") for bar in bars) == ["bar failed", "bar other"]
    assert {bar.findtext("title") for bar in bars} == {
        f"#1 {HOSTILE} (attempt 1): FAILED, 1.00 s, exit code 1",
        f"#2 /t/2.sh (attempt 1): {HOSTILE}, 1.00 s, exit code 1"}
    statuses = [attributes.get("value") for tag, attributes in page.tags if tag == "input"
                and attributes.get("type") == "checkbox"]
    assert statuses == ["FAILED", HOSTILE]
    classes = {attributes.get("class") for tag, attributes in page.tags if tag == "li"}
    assert classes == {"count total", "count failed", "count other", "count attempts"}


def test_ansi_nul_and_other_controls_become_visible_escapes(tmp_path: Path) -> None:
    items = [attempt(1, status="FAILED", task=CONTROLS), row(1, "FAILED", task=CONTROLS, error=CONTROLS),
             output(1, stdout=CONTROLS + "\nsecond line\n", stderr="\x00" * 3, task=CONTROLS)]
    path, text, page = render(tmp_path, items, summary=[CONTROLS])
    raw = path.read_bytes()
    assert not re.search(rb"[\x00-\x08\x0b-\x1f\x7f]", raw), "a raw control character in the file"
    assert page.texts["pre.tail stdout"] == [CLEANED + "\nsecond line\n"]
    assert page.texts["pre.tail stderr"] == ["\\x00\\x00\\x00"]
    assert page.rows()[0][1] == CLEANED and page.texts["pre.summary"] == [CLEANED + "\n"]
    svg_of(text)  # still well-formed XML


def test_the_style_and_script_are_the_files_inline_and_the_policy_names_their_hashes(tmp_path: Path) -> None:
    _path, text, page = render(tmp_path, [attempt(1), row(1)])
    templates = Path(html_report.TEMPLATES)
    style = re.search(r"<style>(.*?)</style>", text, re.S).group(1)  # type: ignore[union-attr]
    (script,) = [body for attributes, body in page.scripts if not attributes]
    # included as they are: a stray "{{" or "{%" in them would have been read as template syntax
    assert style == (templates / "report.css").read_text(encoding="utf-8").rstrip("\n")
    assert script == (templates / "report.js").read_text(encoding="utf-8").rstrip("\n")
    (policy,) = [attributes["content"] for tag, attributes in page.tags
                 if tag == "meta" and attributes.get("http-equiv") == "Content-Security-Policy"]

    def digest(body: str) -> str:
        return "sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()

    assert policy == (f"default-src 'none'; style-src '{digest(style)}'; script-src '{digest(script)}';"
                      " base-uri 'none'; form-action 'none'")
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", text)


# -- what the page shows ------------------------------------------------------------------------
def test_counts_table_outputs_and_one_bar_per_started_attempt(tmp_path: Path) -> None:
    items = [
        attempt(1, 1, "FAILED", slot=2, start=0.0), attempt(1, 2, "SUCCESS", slot=1, start=2.0),  # retried
        row(1, "SUCCESS", attempts=2, arguments=("a b", "c")),
        attempt(2, 1, "TIMEOUT", slot=2, start=1.0, length=3.0), row(2, "TIMEOUT", error="Timeout after 3s"),
        output(2, stdout="partial\n", stderr="", status="TIMEOUT"),
        row(3, "CANCELLED", attempts=0),  # never started: a row, no bar
        Attempt(4, "/t/4.sh", 1, "RUNNING", 3, None, T + 4.0, None), row(4, "RUNNING"),  # still running
    ]
    _path, text, page = render(tmp_path, items,
                               summary=["Parallel Task Execution Summary", "Total Tasks: 4"],
                               extra_counts={"CANCELLED": 5})
    counts = [text for css in ("total", "ok", "timeout", "cancelled", "running", "attempts")
              for text in page.texts[f"li.count {css}"]]
    assert [" ".join(text.split()) for text in counts] == [
        "9 tasks", "1 SUCCESS", "1 TIMEOUT", "6 CANCELLED", "1 RUNNING", "4 attempts"]
    data = page.data()
    assert [heading for heading, _kind in data["columns"]] == [
        "#", "Task", "Arguments", "Status", "Attempts", "Worker", "Exit code", "Start", "Duration (s)",
        "Memory (MB)", "CPU (%)", "Error"]
    assert data["pageRows"] == html_report.PAGE_ROWS and data["withOutput"] == [2]
    rows = page.rows()
    assert [(r[0], r[3], r[4]) for r in rows] == [(1, "SUCCESS", 2), (2, "TIMEOUT", 1), (3, "CANCELLED", 0),
                                                  (4, "RUNNING", 1)]
    assert rows[0][2] == "a b c" and rows[0][7] == iso_seconds(T)
    assert rows[0][8:12] == [1.0, 1.25, 50.0, ""] and rows[1][11] == "Timeout after 3s"
    svg = svg_of(text)
    bars = [element for element in svg.iter() if element.tag == "rect"]
    assert [(bar.get("class"), bar.get("data-position")) for bar in bars] == [
        ("bar failed", "1"), ("bar ok", "1"), ("bar timeout", "2"), ("bar running", "4")]
    assert [label.text for label in svg.iter("text") if (label.text or "").startswith("slot")] == [
        "slot 1", "slot 2", "slot 3"]
    # the run's span: first start to the report's time (an attempt still runs)
    assert "4 attempt(s) over 61.00 s, one bar each" in " ".join(page.texts["figcaption"][0].split())
    (details,) = [attributes for tag, attributes in page.tags if tag == "details"]
    assert details == {"class": "output", "id": "output-2", "open": None}
    assert page.texts["pre.tail stdout"] == ["partial\n"] and "pre.tail stderr" not in page.texts


def test_a_journal_output_that_was_not_recorded_points_at_the_output_log(tmp_path: Path) -> None:
    _path, _text, page = render(tmp_path, [row(1, "FAILED"), output(1, stdout=None, stderr=None)])
    assert "pre.tail stdout" not in page.texts
    assert "No output recorded: see the output log /logs/out.txt." in page.texts["p.note"]


def test_an_empty_run_has_a_page_too(tmp_path: Path) -> None:
    _path, text, page = render(tmp_path, [], summary=[])
    assert page.rows() == [] and "<svg" not in text
    assert "No attempt started." in page.texts["p.note"]


# -- bounds --------------------------------------------------------------------------------------
def test_past_max_bars_the_timeline_counts_attempts_in_a_grid(tmp_path: Path) -> None:
    items: List[Any] = []
    for position in range(1, 13):
        status = "FAILED" if position == 5 else "SUCCESS"
        items += [attempt(position, status=status, slot=position % 2 + 1, start=position * 1.0, length=0.5),
                  row(position, status)]
    _path, text, page = render(tmp_path, items, bounds=Bounds(max_bars=11))
    assert text.count('<rect class="bar ') == 0
    svg = svg_of(text)
    groups = [element for element in svg.iter("g") if element.get("class") == "cell"]
    tooltips = [group.findtext("title") for group in groups]
    # slots never overlap here: every column of a slot holds one attempt (each one spans several)
    assert len(groups) > 12 and all(": 1 attempt(s): 1 " in tip for tip in tooltips), tooltips
    failed = [re.match(r"slot (\d+), ([\d.]+)-([\d.]+) s", tip).groups()  # type: ignore[union-attr]
              for tip in tooltips if tip.endswith("1 FAILED")]
    # task 5 ran in slot 2 from 4.0 to 4.5 s after the first start
    assert failed and {slot for slot, _a, _b in failed} == {"2"}
    assert min(float(began) for _s, began, _e in failed) >= 3.9
    assert max(float(end) for _s, _b, end in failed) <= 4.6
    assert {rect.get("class") for group in groups if group.findtext("title").endswith("FAILED")  # type: ignore
            for rect in group.iter("rect")} == {"cell failed"}
    assert "12 attempts over 11.50 s: more than 11" in " ".join(page.texts["figcaption"][0].split())
    assert len(page.rows()) == 12  # the table keeps every task


def test_a_grid_cell_stacks_its_statuses_by_share() -> None:
    frame = timeline.Frame(T, T + 10.0, (1,))
    grid = timeline.Grid(frame, columns=10)
    spans = [attempt(1, status="SUCCESS", start=0.1 * n, length=0.05) for n in range(9)]
    spans.append(attempt(2, status="FAILED", start=0.95, length=0.01))
    for span in spans:
        grid.add(span, 100.0)
    (cell,) = [cell for cell in grid.cells()]
    assert cell.counts == (("SUCCESS", 9), ("FAILED", 1)) and cell.css == "failed"
    bands = cell.bands()
    assert [css for css, _y, _h in bands] == ["failed", "ok"]
    assert bands[0][2] == pytest.approx(1.4) and bands[0][1] + bands[0][2] == bands[1][1]
    assert sum(height for _css, _y, height in bands) == pytest.approx(timeline.BAR_HEIGHT)
    assert cell.tooltip == "slot 1, 0.00-1.00 s: 10 attempt(s): 9 SUCCESS, 1 FAILED"
    # an attempt over several columns counts in each of them
    long = timeline.Grid(frame, columns=10)
    long.add(attempt(3, start=2.5, length=3.0), 100.0)
    assert [round(cell.began) for cell in long.cells()] == [2, 3, 4, 5]


def test_output_tails_stop_at_max_outputs_or_at_the_budget(tmp_path: Path) -> None:
    items: List[Any] = []
    for position in range(1, 6):
        items += [row(position, "FAILED"), output(position, stdout="x" * 40, stderr="y" * 10)]
    _path, _text, page = render(tmp_path, items, bounds=Bounds(max_outputs=3))
    assert page.data()["withOutput"] == [1, 2, 3]
    assert len(page.texts["pre.tail stdout"]) == 3
    (note,) = [" ".join(note.split()) for note in page.texts["p.note"] if "output tails" in note]
    assert note == ("The output tails of 3 of 5 failed task(s) (the first 3, as long as they fit the page);"
                    " every task's output is in the output log /logs/out.txt.")
    # 50 characters a task: a budget of 120 holds two; the third does not fit, and none after it is shown
    _path, _text, page = render(tmp_path, items, bounds=Bounds(output_budget=120), name="budget.html")
    assert page.data()["withOutput"] == [1, 2]


def test_a_reporter_can_ask_whether_an_output_still_fits(tmp_path: Path) -> None:
    spool = html_report.Spool(str(tmp_path / "r.html"), Bounds(max_outputs=1))
    try:
        assert spool.wants_output()
        spool.add(row(1, "FAILED"))
        spool.add(output(1))
        assert not spool.wants_output() and spool.omitted_outputs == 0
        spool.add(row(2, "FAILED"))
        assert spool.omitted_outputs == 1
    finally:
        spool.close()
    assert spool.closed


# -- the reporter -------------------------------------------------------------------------------
def test_the_reporter_spools_every_attempt_and_renders_at_the_end(tmp_path: Path) -> None:
    run = run_info(tmp_path)
    path = tmp_path / "report.html"
    reporter = HtmlReporter(str(path))
    reporter.parallelr_run_start(run)
    first, second, third = (Task(argv=["bash", f"/t/{n}.sh"], source=f"/t/{n}.sh", index=n,
                                 arguments=(f"arg{n}",)) for n in (1, 2, 3))
    retried = TaskResult(task=first, status=TaskStatus.FAILED, worker_id=2, exit_code=1, start_time=T,
                         end_time=T + 1, duration=1.0, stdout="first try\n", error_message="Exit code 1")
    reporter.parallelr_task_retry(run, retried, 0.5)
    again = attrs.evolve(first, attempt=2)
    reporter.parallelr_task_finish(run, TaskResult(
        task=again, status=TaskStatus.TIMEOUT, worker_id=1, start_time=T + 2, end_time=T + 3, duration=1.0,
        memory_mb=2.5, cpu_percent=10.0, stdout="late \x1b[1m\n", stderr="",
        error_message="Timeout after 1s"))
    reporter.parallelr_task_finish(run, TaskResult(task=second, status=TaskStatus.SUCCESS, worker_id=2,
                                                   exit_code=0, start_time=T + 1, end_time=T + 1.5,
                                                   duration=0.5, stdout="ok\n"))
    reporter.parallelr_task_finish(run, TaskResult.cancelled(third, "stopped"))  # never started
    assert not path.exists()  # nothing before the end of the run
    summary = RunSummary(total=3, succeeded=1, failed=1, timed_out=1, errored=0, cancelled=1)
    reporter.parallelr_run_finish(run, summary)
    page = Page(path.read_text(encoding="utf-8"))
    assert page.texts["pre.summary"] == ["\n".join(summary_lines(run, summary)) + "\n"]
    assert [row[:8] for row in page.rows()] == [
        [1, "/t/1.sh", "arg1", "TIMEOUT", 2, 1, None, iso_seconds(T + 2)],
        [2, "/t/2.sh", "arg2", "SUCCESS", 1, 2, 0, iso_seconds(T + 1)],
        [3, "/t/3.sh", "arg3", "CANCELLED", 0, None, None, ""],
    ]
    assert [row[8:] for row in page.rows()] == [[1.0, 2.5, 10.0, "Timeout after 1s"], [0.5, 0.0, 0.0, ""],
                                                [None, None, None, "stopped"]]
    assert page.data()["withOutput"] == [1]  # only the failed task's tails, of its last attempt
    assert page.texts["pre.tail stdout"] == ["late \\x1b[1m\n"]
    titles = page.texts["title"][1:]  # the bars', in the order the attempts ended
    assert [title.split(":")[0] for title in titles] == ["#1 /t/1.sh (attempt 1)", "#1 /t/1.sh (attempt 2)",
                                                         "#2 /t/2.sh (attempt 1)"]
    assert sorted(os.listdir(tmp_path)) == ["report.html"]


def test_a_reporter_whose_spool_failed_writes_no_page(tmp_path: Path) -> None:
    run = run_info(tmp_path)
    reporter = HtmlReporter(str(tmp_path / "report.html"))
    reporter.parallelr_run_start(run)
    assert reporter._spool is not None
    reporter._spool.close()  # as after a failed write (the error was raised then)
    reporter.parallelr_run_finish(run, RunSummary(total=0, succeeded=0, failed=0, timed_out=0, errored=0,
                                                  cancelled=0))
    assert os.listdir(tmp_path) == []


# -- writing -------------------------------------------------------------------------------------
def test_the_page_replaces_an_old_one_whole_and_leaves_nothing_beside_it(tmp_path: Path) -> None:
    folder = tmp_path / "répertoire avec espaces"
    folder.mkdir()
    old = folder / "rapport $(x) ü.html"
    old.write_text("old report")
    path, _text, page = render(folder, [attempt(1), row(1)], name=old.name)
    assert path == old and page.rows()[0][0] == 1
    assert sorted(os.listdir(folder)) == [old.name]  # no part file, no spool


def test_a_directory_in_the_way_is_one_line_and_no_part_file_is_left(tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    target.mkdir()
    with pytest.raises(WriteError) as caught:
        write_report(str(target), facts(), [], [attempt(1), row(1)])
    assert str(caught.value) == f"cannot write the HTML report {target}: Is a directory"
    assert sorted(os.listdir(tmp_path)) == ["report.html"]


def test_a_missing_directory_names_the_report(tmp_path: Path) -> None:
    target = tmp_path / "missing" / "report.html"
    with pytest.raises(WriteError) as caught:
        write_report(str(target), facts(), [], [])
    assert str(caught.value) == f"cannot write the HTML report {target}: No such file or directory"


# The items below spool to about 600 KB and make a page of about 900 KB: a 256 KB disk fills while
# they are spooled, a 1 MB one while the page is written (the spool still takes its room).
@pytest.mark.parametrize("size", ["256k", "1m"])
def test_a_full_disk_keeps_the_old_report_whole(tmp_path: Path, size: str) -> None:
    with tmpfs(tmp_path / "tiny", size) as disk:
        old = disk / "report.html"
        old.write_text("the old report\n")
        items: List[Any] = []
        for position in range(1, 3001):
            items += [attempt(position, start=position * 0.01),
                      row(position, task=f"/t/{'x' * 60}/{position}")]
        with pytest.raises(WriteError) as caught:
            write_report(str(old), facts(), ["Total Tasks: 3000"], items)
        assert str(caught.value) == f"cannot write the HTML report {old}: No space left on device"
        assert old.read_text() == "the old report\n"
        assert sorted(os.listdir(disk)) == ["report.html"]
