"""The HTML report in a real headless Chromium (Playwright, as the dashboard's browser tests), opened
from ``file://`` with every network request blocked and counted: markup in a task's name and output
stays inert text, the table sorts and filters, the timeline has a bar per attempt, and a screenshot
of a realistic run (``PARALLELR_SCREENSHOTS=docs/img`` keeps it as docs/img/html-report.png).

Two runs of the real CLI serve the module: about thirty tasks with failures, a timeout and retries,
and a small one whose task is named and prints ``<img src=x onerror=alert(1)>`` and
``<script>alert(2)</script>``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
from conftest import REPO, cli_env

XSS = "<img src=x onerror=alert(1)>"
SCRIPT = "<script>alert(2)</script>"
TASKS = 30
FAILING = {7: 2, 13: 1, 22: 3}  # task number -> exit code (retried once, fails again)
TIMING_OUT = 18


class Reports:
    def __init__(self, realistic: Path, hostile: Path) -> None:
        self.realistic = realistic
        self.hostile = hostile


def _run(home: Path, args: List[str]) -> None:
    # not in HOME: its parallelr/ folder would shadow the package for "python -m parallelr"
    done = subprocess.run([sys.executable, "-m", "parallelr", *args], env=cli_env(home), cwd=str(home.parent),
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 1, done.stdout + done.stderr  # both runs have failed tasks


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> Reports:
    root = tmp_path_factory.mktemp("html-report")
    home = root / "home"
    home.mkdir()
    tasks = root / "nightly"
    tasks.mkdir()
    for number in range(1, TASKS + 1):
        name = f"build-{number:02d}.sh"
        pause = 0.05 + (number * 7 % 11) * 0.04  # 0.05 to 0.45 s, mixed
        body = f"echo building part {number}; sleep {pause:.2f}\n"
        if number in FAILING:
            body += f"echo 'part {number}: missing input file' >&2; exit {FAILING[number]}\n"
        if number == TIMING_OUT:
            body = "echo waiting for the lock; sleep 5\n"
        (tasks / name).write_text(body)
    realistic = root / "nightly report.html"
    _run(home, ["-T", str(tasks), "-C", "bash @TASK@", "-r", "-m", "4", "-t", "1", "--retries", "1",
                "--retry-delay", "0.2", "--html-report", str(realistic)])
    hostile_tasks = root / "hostile"
    hostile_tasks.mkdir()
    (hostile_tasks / f"{XSS}.sh").write_text(f"echo '{XSS}'; echo '{SCRIPT}' >&2; exit 1\n")
    (hostile_tasks / "fine.sh").write_text("echo fine\n")
    hostile = root / "hostile.html"
    _run(home, ["-T", str(hostile_tasks), "-C", "bash @TASK@", "-r", "-m", "2",
                "--html-report", str(hostile)])
    return Reports(realistic, hostile)


@pytest.fixture
def opened(page: Any) -> Iterator[Any]:
    """``opened(path)``: the page at ``file://path``, every request but the file itself refused and
    counted in ``page.requests``; console errors in ``page.console_errors``."""
    page.requests = []
    page.console_errors = []
    page.on("request", lambda request: page.requests.append(request.url))
    page.on("console", lambda message: page.console_errors.append(message.text)
            if message.type == "error" else None)
    refused: List[str] = []

    def route(handler: Any) -> None:
        if handler.request.url.startswith("file://"):
            handler.continue_()
        else:
            refused.append(handler.request.url)
            handler.abort()

    page.route("**/*", route)

    def open_page(path: Path) -> Any:
        page.goto(path.as_uri())
        page.wait_for_selector("#task-table tbody tr")
        return page

    yield open_page
    assert refused == [], refused
    assert [url for url in page.requests if not url.startswith("file://")] == []
    assert page.dialogs == [] and page.errors == [] and page.console_errors == []


def _data(page: Any) -> Dict[str, Any]:
    return json.loads(page.text_content("#task-data"))


def _rows(page: Any) -> List[List[str]]:
    return page.eval_on_selector_all(
        "#task-table tbody tr", "rows => rows.map(row => Array.from(row.cells, cell => cell.textContent))")


def test_markup_in_a_tasks_name_and_output_is_shown_as_text(reports: Reports, opened: Any) -> None:
    page = opened(reports.hostile)
    assert page.locator("img").count() == 0
    assert page.evaluate("document.scripts.length") == 2  # the data block and the page's own script
    # shown relative to the tasks' common directory, the whole path as the cell's tooltip
    assert page.inner_text("#task-root") == f"Tasks in {reports.hostile.parent}/hostile/"
    assert sorted(row[1] for row in _rows(page)) == [f"{XSS}.sh" + "output", "fine.sh"]  # + its output link
    titles = page.eval_on_selector_all("#task-table td.task", "cells => cells.map(cell => cell.title)")
    assert sorted(titles) == [f"{reports.hostile.parent}/hostile/{name}" for name in (f"{XSS}.sh", "fine.sh")]
    tails = page.locator("pre.tail").all_text_contents()
    assert tails == [f"{XSS}\n", f"{SCRIPT}\n"]
    assert XSS in page.inner_text("#outputs summary")
    bar = page.locator("#timeline rect.bar.failed")
    bar.hover()
    bar.click()  # filters the table to its task
    assert [row[1] for row in _rows(page)] == [f"{XSS}.sh" + "output"]
    page.click("a.output-link")
    assert page.evaluate("location.hash").startswith("#output-")
    assert page.dialogs == []


def test_sorting_by_a_column_reorders_the_rows(reports: Reports, opened: Any) -> None:
    page = opened(reports.realistic)
    numbers = [int(row[0]) for row in _rows(page)]
    assert numbers == list(range(1, TASKS + 1))
    assert page.get_attribute("#task-table th:nth-child(1)", "aria-sort") == "ascending"
    duration = page.locator("#task-table th:nth-child(9) button")
    duration.click()
    seconds = [float(row[8]) for row in _rows(page)]
    assert seconds == sorted(seconds) and seconds != [float(row[8]) for row in sorted(
        _rows(page), key=lambda row: int(row[0]))]
    assert page.get_attribute("#task-table th:nth-child(9)", "aria-sort") == "ascending"
    assert page.get_attribute("#task-table th:nth-child(1)", "aria-sort") == "none"
    duration.click()
    assert [float(row[8]) for row in _rows(page)] == sorted(seconds, reverse=True)
    assert page.get_attribute("#task-table th:nth-child(9)", "aria-sort") == "descending"
    page.click("#task-table th:nth-child(4) button")  # status: FAILED, SUCCESS, TIMEOUT
    statuses = [row[3] for row in _rows(page)]
    assert statuses == ["FAILED"] * 3 + ["SUCCESS"] * 26 + ["TIMEOUT"]


def test_the_filter_box_and_the_status_boxes_hide_rows(reports: Reports, opened: Any) -> None:
    page = opened(reports.realistic)
    page.fill("#filter", "build-1")
    assert sorted(int(row[0]) for row in _rows(page)) == list(range(10, 20))
    assert page.inner_text("#shown") == f"10 of {TASKS} task(s) match"
    page.fill("#filter", "EXIT CODE")  # the error column ("Exit code 2"), any case

    assert sorted(int(row[0]) for row in _rows(page)) == sorted(FAILING)
    page.fill("#filter", "#18")
    assert [(row[0], row[3]) for row in _rows(page)] == [("18", "TIMEOUT")]
    page.fill("#filter", "")
    page.uncheck("#status-filter input[value=SUCCESS]")
    assert sorted(int(row[0]) for row in _rows(page)) == sorted([*FAILING, TIMING_OUT])
    page.uncheck("#status-filter input[value=FAILED]")
    page.uncheck("#status-filter input[value=TIMEOUT]")
    assert _rows(page) == [["No task matches."]]
    page.check("#status-filter input[value=SUCCESS]")
    assert len(_rows(page)) == TASKS - len(FAILING) - 1


def test_the_timeline_has_a_bar_per_attempt_with_its_tooltip(reports: Reports, opened: Any) -> None:
    page = opened(reports.realistic)
    rows = [row for chunk in _data(page)["chunks"] for row in chunk]
    attempts = sum(row[4] for row in rows)
    assert attempts == TASKS + len(FAILING) + 1  # each failure and the timeout were retried once
    bars = page.locator("#timeline rect.bar")
    assert bars.count() == attempts
    assert page.locator("#timeline rect.bar.failed").count() == 2 * len(FAILING)
    assert page.locator("#timeline rect.bar.timeout").count() == 2
    tips = page.locator("#timeline rect.bar.timeout title").all_text_contents()
    assert sorted(tip.split(": ", 1)[1].split(",")[0] for tip in tips) == ["TIMEOUT", "TIMEOUT"]
    assert all(tip.startswith(f"#{TIMING_OUT} ") and "exit code" in tip for tip in tips)
    slots = page.locator("#timeline g.slots text").all_text_contents()
    assert slots == ["slot 1", "slot 2", "slot 3", "slot 4"]
    page.locator("#timeline rect.bar.timeout").first.click()
    assert [row[0] for row in _rows(page)] == [str(TIMING_OUT)]


def test_a_screenshot_of_a_realistic_run(reports: Reports, opened: Any, tmp_path: Path) -> None:
    page = opened(reports.realistic)
    page.set_viewport_size({"width": 1280, "height": 1280})
    page.click("#task-table th:nth-child(4) button")  # failures first: what a reader looks for
    # the top of the page: the counts, the timeline and the table (the tails and the summary follow)
    image = page.screenshot(path=str(tmp_path / "html-report.png"))
    assert image.startswith(b"\x89PNG\r\n\x1a\n")
    wanted = os.environ.get("PARALLELR_SCREENSHOTS")
    if wanted:
        target = REPO / "docs" / "img" if wanted == "1" else Path(wanted)
        target.mkdir(parents=True, exist_ok=True)
        (target / "html-report.png").write_bytes(image)
        assert (target / "html-report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
