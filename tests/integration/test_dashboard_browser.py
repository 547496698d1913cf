"""The dashboard in a real headless Chromium, against a real store, a real worker process and real
CLI subprocesses: the counts, the add-job form, the retry buttons, a run's timeline, escaping,
the token, read-only mode, live updates and screenshots.

One store, one ``queuectl worker start --count 2`` and one dashboard serve the whole module (the
``world`` fixture), so that the module stays quick; the tests share the store, and each one
works with jobs of its own (its own IDs, queues and directories). The store is seeded before the
first test with jobs in several settled states (completed, dead, pending in the paused queue
``held``, scheduled an hour ahead) and with one batch run whose task ``b.sh`` fails once and is
retried. Every process started here goes through a :class:`ProcessJanitor` of the module (or
the test's ``janitor``), so none outlives the module.
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence
from urllib.parse import quote

import pytest
from conftest import CliResult, ProcessJanitor, _wait_until, cli_env
from dashboard_support import DashboardProcess, start_dashboard

QUEUECTL = (sys.executable, "-c",
            "import sys; from parallelr.cli import main_queuectl; sys.exit(main_queuectl())")
STATES = ("pending", "scheduled", "waiting", "processing", "completed", "failed", "dead", "cancelled")
# The jobs the store holds before the first test, and the counts by state they make.
SEED_JOBS: List[Dict[str, Any]] = [
    {"id": "seed-ok-1", "command": "echo ok 1"},
    {"id": "seed-ok-2", "command": "echo ok 2"},
    {"id": "seed-ok-3", "command": "echo ok 3"},
    {"id": "seed-dead", "command": "echo broken >&2; exit 3", "max_retries": 1},
    {"id": "seed-held-1", "command": "echo held 1", "queue": "held"},
    {"id": "seed-held-2", "command": "echo held 2", "queue": "held"},
    {"id": "seed-later", "command": "echo later", "delay": 3600},
]
SEED_COUNTS = {"pending": 2, "scheduled": 1, "waiting": 0, "processing": 0, "completed": 3, "failed": 0,
               "dead": 1, "cancelled": 0}
XSS = "<img src=x onerror=alert(1)>"
SCRIPT = "<script>alert(2)</script>"
PRIORITY_ERROR = ('"priority" must be a whole number from -1000000000 to 1000000000 (higher runs first)'
                  ' or high, medium or low; got "urgent"')


class World:
    """The module's store, worker and dashboard, and the CLI against them."""

    def __init__(self, root: Path, janitor: ProcessJanitor) -> None:
        self.root = root
        self.home = root / "home"
        self.home.mkdir()
        self.db = self.home / "parallelr" / "state.db"  # the default store: the journal's file too
        self.janitor = janitor
        self.dashboard: Optional[DashboardProcess] = None
        self.worker: Optional[subprocess.Popen] = None
        self.worker_log = root / "worker.log"
        self.run_id = ""
        self.run_tasks: List[Dict[str, Any]] = []
        self.tasks_dir = root / "tasks"

    @property
    def url(self) -> str:
        assert self.dashboard is not None
        return self.dashboard.url

    # -- the CLI -------------------------------------------------------------------------------------
    def cli(self, *args: str, prog: str = "queuectl", timeout: float = 60,
            cwd: Optional[Path] = None) -> CliResult:
        argv = [*QUEUECTL, *args] if prog == "queuectl" else [sys.executable, "-m", "parallelr", *args]
        done = subprocess.run(argv, env=cli_env(self.home, self.janitor.env), cwd=str(cwd or self.root),
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        return CliResult(done.returncode, done.stdout, done.stderr)

    def ok(self, *args: str, **kwargs: Any) -> CliResult:
        result = self.cli(*args, **kwargs)
        assert result.returncode == 0, (args, result.output)
        return result

    def enqueue(self, jobs: Sequence[Dict[str, Any]], name: str) -> List[str]:
        """``queuectl enqueue --file`` of these job objects; returns the printed IDs."""
        path = self.root / f"{name}.jsonl"
        path.write_text("".join(json.dumps(job) + "\n" for job in jobs), encoding="utf-8")
        result = self.ok("enqueue", "--file", str(path))
        assert result.stdout.splitlines() == [job["id"] for job in jobs], result.output
        return result.stdout.splitlines()

    def show(self, key: str) -> Dict[str, Any]:
        return json.loads(self.ok("show", key, "--json").stdout)

    def status(self) -> Dict[str, Any]:
        return json.loads(self.ok("status", "--json").stdout)

    # -- the dashboard's JSON API (cheap: no process start) ------------------------------------------
    def api(self, path: str) -> Any:
        assert self.dashboard is not None
        return self.dashboard.get_json(path)

    def api_job(self, key: str) -> Dict[str, Any]:
        return self.api("/api/jobs/" + quote(key, safe=""))

    def wait_states(self, wanted: Dict[str, str], timeout: float = 15) -> None:
        """Until each job of ``wanted`` is in its state (read through /api/jobs/ID)."""
        seen: Dict[str, str] = {}

        def reached() -> bool:
            seen.update({key: self.api_job(key)["state"] for key in wanted})
            return seen == wanted

        _wait_until(reached, timeout, f"jobs to be {wanted} (they are {seen})")

    def wait_settled(self, counts: Dict[str, int], jobs_done: int, timeout: float = 20) -> None:
        """Until the store's counts are ``counts`` and the one worker's row says ``jobs_done``."""
        seen: Dict[str, Any] = {}

        def settled() -> bool:
            if self.worker is not None and self.worker.poll() is not None:
                pytest.fail(f"the worker exited with {self.worker.returncode}: {self.worker_log.read_text()}")
            status = self.api("/api/status")
            seen.update(status["counts"], workers=[worker["jobs_done"] for worker in status["workers"]])
            return seen == {**counts, "workers": [jobs_done]}

        _wait_until(settled, timeout, f"the store's counts to be {counts} (they are {seen})")

    def page_url(self, path: str) -> str:
        return self.url + path.lstrip("/")

    def open(self, page: Any, path: str = "/") -> Any:
        """Open a page of the shared dashboard; returns after its first live update landed."""
        response = page.goto(self.page_url(path))
        assert response is not None and response.status == 200, (path, response and response.status)
        wait_live(page)
        return response


def wait_live(page: Any) -> None:
    """The page's script is connected and has swapped the live part in at least once."""
    page.wait_for_selector("#live[data-updated]", state="attached")
    expect(page.locator("#connection")).to_have_text("live")


def submit(page: Any, selector: str, status: int = 200) -> None:
    """Click the button ``selector`` and check the status of the page the form leads to (with the
    one-line error such a page shows, if any)."""
    with page.expect_navigation() as navigation:
        page.click(selector)
    response = navigation.value
    if response.status != status:  # the page's own message (its script may since have replaced it)
        found = re.search(r'id="error-message">([^<]*)<', response.text())
        pytest.fail(f"{selector} led to {response.status} (not {status}) at {page.url}: "
                    f"{html.unescape(found.group(1)) if found else response.text()[:300]}")


def expect(target: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


def job_path(key: str) -> str:
    return "/job?id=" + quote(key, safe="")


def cell_texts(row: Any) -> List[str]:
    return [text.strip() for text in row.locator("td").all_inner_texts()]


def shown_counts(page: Any) -> Dict[str, int]:
    return {state: int(page.inner_text(f"#count-{state} .number")) for state in STATES}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    janitor = ProcessJanitor()
    world = World(tmp_path_factory.mktemp("dashboard-browser"), janitor)
    try:
        _build(world)
        yield world
    finally:
        if world.worker is not None and world.worker.poll() is None:
            world.worker.send_signal(signal.SIGTERM)  # graceful: it finishes and deregisters
            with contextlib.suppress(subprocess.TimeoutExpired):
                world.worker.wait(timeout=10)
        if world.dashboard is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                world.dashboard.stop(timeout=10)
        janitor.cleanup()  # anything still alive (by PID, checked by psutil) is killed


def _build(world: World) -> None:
    tasks = world.tasks_dir
    tasks.mkdir()
    flag = shlex.quote(str(world.root / "b.flag"))
    (tasks / "a.sh").write_text("sleep 0.3; echo a\n", encoding="utf-8")
    (tasks / "b.sh").write_text(f"test -f {flag} || {{ touch {flag}; echo first-try >&2; exit 4; }}\n"
                                "echo b\n", encoding="utf-8")
    (tasks / "c.sh").write_text("echo c\n", encoding="utf-8")

    def batch_run() -> Dict[str, Any]:
        world.ok("-T", str(tasks), "-C", "bash @TASK@", "-r", "-m", "2", "--retries", "1",
                 "--retry-delay", "0.1", prog="parallelr")
        return json.loads(world.ok("runs", "show", "last", "--json", prog="parallelr").stdout)

    world.ok("pause", "--queue", "held")  # creates the store; "held" keeps its jobs pending
    with ThreadPoolExecutor(max_workers=5) as pool:
        dashboard = pool.submit(start_dashboard, world.janitor, world.home, db=world.db)
        # a worker's row (its jobs done) is written at each heartbeat: every second, not 10 s
        beat = pool.submit(world.ok, "config", "set", "heartbeat-seconds", "1")
        formq = pool.submit(world.ok, "pause", "--queue", "formq")  # for the add-job form's test
        seeded = pool.submit(world.enqueue, SEED_JOBS, "seed")
        batch = pool.submit(batch_run)
        beat.result()
        with open(world.worker_log, "wb") as log:
            world.worker = world.janitor.popen([*QUEUECTL, "worker", "start", "--count", "2"], world.home,
                                               cwd=str(world.root), stdout=log, stderr=subprocess.STDOUT)
        world.dashboard = dashboard.result()
        formq.result()
        seeded.result()
        world.wait_settled(SEED_COUNTS, jobs_done=4)
        shown = batch.result()
    world.run_id = shown["run"]["id"]
    world.run_tasks = shown["tasks"]
    assert shown["run"]["state"] == "finished" and shown["run"]["exit_code"] == 0, shown["run"]


# -- 1. the overview's counts and workers --------------------------------------------------------------
def test_the_overview_shows_the_stores_counts_and_the_running_worker(world: World, page: Any) -> None:
    world.open(page, "/")
    status = world.status()
    api = world.api("/api/status")
    assert status["counts"] == SEED_COUNTS  # the batch run's tasks are not queue jobs
    assert api["counts"] == status["counts"] and api["total"] == status["total"] == 7
    assert shown_counts(page) == status["counts"]
    assert page.inner_text("#count-total") == "7"

    (worker,) = status["workers"]
    assert world.worker is not None and worker["pid"] == world.worker.pid
    rows = page.locator("table.workers tbody tr")
    assert rows.count() == 1
    cells = cell_texts(rows.first)
    assert cells[0] == worker["id"]
    assert cells[1] == str(world.worker.pid)
    assert cells[2] == worker["host"]
    assert cells[3:5] == ["2", "all"]
    assert cells[6] == str(worker["jobs_done"]) == "4"  # 3 completed + 1 dead, one attempt each
    assert cells[7] == "idle"
    assert page.inner_text("section h2:has-text('Workers')") == "Workers (1)"
    assert page.locator("ul.paused li").all_inner_texts() == ["formq", "held"]
    assert page.dialogs == [] and page.errors == []


# -- 2. the add-job form -----------------------------------------------------------------------------
def test_a_job_added_with_the_form_runs_and_its_page_follows_it_without_a_reload(
    world: World, page: Any
) -> None:
    # the queue formq is paused (by the module's fixture), so that the job is seen pending first
    world.open(page, "/")
    page.fill("#job-command", "echo from-form")
    page.fill("#job-id", "form-job")
    page.fill("#job-queue", "formq")
    page.fill("#job-priority", "high")
    page.fill("#job-max-retries", "2")
    submit(page, "#job-submit")
    assert page.url == world.page_url("/job?id=form-job")
    page.evaluate("window.__marker = 1")
    assert page.inner_text("p.flash") == "Enqueued job form-job"
    assert page.inner_text("#job-key") == "form-job"
    assert page.inner_text("#live h1 .state") == "pending"
    assert page.inner_text("#job-attempts") == "0 of 2"
    assert page.inner_text("dt:has-text('Priority') + dd") == "10"
    assert page.inner_text("dt:has-text('Queue') + dd") == "formq"

    world.ok("resume", "--queue", "formq")
    expect(page.locator("#live h1 .state")).to_have_text("completed", timeout=10_000)
    assert page.evaluate("window.__marker") == 1  # no navigation: the live part was swapped in
    rows = page.locator("#attempts-table tr.attempt")
    assert rows.count() == 1
    assert cell_texts(rows.first)[:3] == ["1", "SUCCESS", "0"]
    assert page.text_content("#attempts-table pre.tail.stdout") == "from-form\n"
    assert page.inner_text("#job-attempts") == "1 of 2"
    job = world.api_job("form-job")
    fields = ("state", "command", "queue", "priority", "max_retries", "exit_code")
    assert [job[name] for name in fields] == ["completed", "echo from-form", "formq", 10, 2, 0]
    assert page.dialogs == [] and page.errors == []


def test_a_bad_form_value_shows_the_job_checks_one_line_and_enqueues_nothing(world: World, page: Any) -> None:
    world.open(page, "/")
    before = world.api("/api/status")["total"]
    page.fill("#job-command", "echo never")
    page.fill("#job-id", "bad-form")
    page.fill("#job-priority", "urgent")
    submit(page, "#job-submit", 400)
    assert page.inner_text("#form-error") == PRIORITY_ERROR
    assert page.input_value("#job-command") == "echo never"  # what was typed is kept, to correct it
    assert page.input_value("#job-priority") == "urgent"
    assert world.api("/api/status")["total"] == before
    assert world.api("/api/jobs?q=bad-form")["total"] == 0
    missing = world.cli("show", "bad-form", "--json")
    assert missing.returncode != 0 and "bad-form" in missing.stderr, missing.output


def test_after_a_bad_form_value_the_live_part_still_shows_the_overview(world: World, page: Any) -> None:
    world.open(page, "/")
    page.fill("#job-command", "echo never")
    page.fill("#job-priority", "urgent")
    submit(page, "#job-submit", 400)
    assert page.inner_text("#form-error") == PRIORITY_ERROR
    # the page's script updates the live part once connected: it must stay the overview's counts,
    # not become the error page of GET /actions/enqueue (a 405) nested inside this page
    page.wait_for_selector("#live[data-updated]", state="attached")
    assert page.locator("#live #error-message").count() == 0, page.inner_text("#live")
    assert page.locator("#live header").count() == 0
    assert shown_counts(page) == world.api("/api/status")["counts"]


# -- 3. the retry buttons --------------------------------------------------------------------------------
def test_the_retry_buttons_bring_dead_jobs_back_and_they_complete(world: World, page: Any) -> None:
    workdir = world.root / "retry"
    workdir.mkdir()
    keys = ["retry-1", "retry-2", "retry-3"]
    # each fails the first time only; retry-1's second run takes a moment, to be seen under way
    world.enqueue([{"id": key, "max_retries": 1, "cwd": str(workdir),
                    "command": f"test -f {key}.marker || {{ touch {key}.marker; exit 1; }}"
                               + ("; sleep 1.5" if key == "retry-1" else "")}
                   for key in keys], "retry")
    world.wait_states({key: "dead" for key in keys})

    # on the job page
    world.open(page, job_path("retry-1"))
    assert page.inner_text("#live h1 .state") == "dead"
    submit(page, "#retry-button")
    assert page.url == world.page_url(job_path("retry-1"))
    page.evaluate("window.__marker = 1")
    assert page.inner_text("p.flash") == "1 dead job(s) back to pending"
    assert page.inner_text("#live h1 .state") in ("pending", "processing")
    assert page.locator("#retry-button").count() == 0

    # one row's button on /dead, then "Retry all"
    other = page.context.new_page()
    other_errors: List[str] = []
    other.on("pageerror", lambda error: other_errors.append(str(error)))
    world.open(other, "/dead")
    dead_before = {row.get_attribute("data-id") for row in other.locator("#dead-table tr.job").all()}
    assert {"retry-2", "retry-3", "seed-dead"} <= dead_before and "retry-1" not in dead_before
    submit(other, "#dead-table tr.job[data-id='retry-2'] .retry-one")
    assert other.url == world.page_url("/dead")
    assert other.inner_text("p.flash") == "1 dead job(s) back to pending"
    rest = dead_before - {"retry-2"}
    assert {row.get_attribute("data-id") for row in other.locator("#dead-table tr.job").all()} == rest
    assert other.inner_text("#dead-total") == str(len(rest))
    assert world.api_job("retry-2")["state"] in ("pending", "processing", "completed")
    submit(other, "#retry-all")
    assert other.inner_text("p.flash") == f"{len(rest)} dead job(s) back to pending"
    assert world.api_job("retry-3")["state"] in ("pending", "processing", "completed")

    # the first page follows its job to the end, without a reload
    expect(page.locator("#live h1 .state")).to_have_text("completed", timeout=10_000)
    assert page.evaluate("window.__marker") == 1
    statuses = [cell_texts(row)[1] for row in page.locator("#attempts-table tr.attempt").all()]
    assert statuses == ["FAILED", "SUCCESS"]
    world.wait_states({key: "completed" for key in keys})
    with ThreadPoolExecutor(max_workers=3) as pool:
        shown = list(pool.map(world.show, keys))
    for key, job in zip(keys, shown):
        assert (job["id"], job["state"], job["attempts"], job["exit_code"]) == (key, "completed", 1, 0), job
        attempts = [(attempt["status"], attempt["exit_code"]) for attempt in job["attempts_detail"]]
        assert attempts == [("FAILED", 1), ("SUCCESS", 0)], job
    world.open(other, job_path("retry-3"))
    assert other.inner_text("#live h1 .state") == "completed"
    assert page.dialogs == [] and page.errors == [] and other_errors == []
    other.close()


# -- 4. a run's timeline ------------------------------------------------------------------------------------
TOOLTIP = re.compile(r"(?P<task>.+) \(attempt (?P<attempt>\d+)\): (?P<status>[A-Z]+), "
                     r"(?P<duration>\d+\.\d\d) s, exit code (?P<exit>-?\d+)")


def test_a_runs_timeline_has_one_bar_per_attempt_named_in_its_tooltip(world: World, page: Any) -> None:
    attempts = sum(task["attempts"] for task in world.run_tasks)
    assert attempts == 4  # a.sh, c.sh once; b.sh failed once and was retried
    data = world.api(f"/api/runs/{world.run_id}")
    bars = data["timeline"]["bars"]
    assert len(bars) == attempts

    world.open(page, f"/runs/{world.run_id}")
    rects = page.locator("#timeline rect.bar")
    assert rects.count() == attempts
    drawn = []
    for rect in rects.all():
        title = rect.locator("title").text_content()
        match = TOOLTIP.fullmatch(title or "")
        assert match, title
        assert match["task"] == rect.get_attribute("data-task")
        assert match["status"] == rect.get_attribute("data-status")
        drawn.append((match["task"], int(match["attempt"]), match["status"], int(match["exit"]),
                      float(match["duration"]), rect.get_attribute("y")))
    expected = sorted((bar["task"], bar["attempt"], bar["status"], bar["exit_code"]) for bar in bars)
    assert sorted(item[:4] for item in drawn) == expected
    tasks = world.tasks_dir
    assert expected == [(str(tasks / "a.sh"), 1, "SUCCESS", 0), (str(tasks / "b.sh"), 1, "FAILED", 4),
                        (str(tasks / "b.sh"), 2, "SUCCESS", 0), (str(tasks / "c.sh"), 1, "SUCCESS", 0)]
    durations = {(bar["task"], bar["attempt"]): bar["duration"] for bar in bars}
    for task, attempt, _status, _code, duration, _y in drawn:
        assert abs(duration - durations[(task, attempt)]) <= 0.01, (task, attempt, duration)
    assert durations[(str(tasks / "a.sh"), 1)] >= 0.3
    # one row per slot used: a.sh (0.3 s) and b.sh start together, so -m 2 uses both slots
    slots_used = {bar["slot"] for bar in bars}
    assert len(slots_used) == 2 and data["timeline"]["slots"] == sorted(slots_used)
    rows = page.locator("#timeline g.slots text").all_text_contents()
    assert rows == [f"slot {number}" for number in sorted(slots_used)]
    assert len({item[5] for item in drawn}) == len(slots_used)
    assert f"{attempts} attempt(s)" in page.inner_text("figure.timeline figcaption")
    assert page.locator("#tasks-table tr.task").count() == 3
    assert page.errors == []


# -- 5. escaping -------------------------------------------------------------------------------------------
def test_markup_in_a_jobs_id_command_and_output_is_shown_as_text_everywhere(world: World, page: Any) -> None:
    workdir = world.root / "xss"
    workdir.mkdir()
    command = (f"printf '%s\\n' '{SCRIPT}' '{XSS}'; "
               "while [ ! -f gate ]; do sleep 0.05; done; exit 1")
    world.enqueue([{"id": XSS, "command": command, "max_retries": 1, "cwd": str(workdir), "timeout": 30}],
                  "xss")
    world.wait_states({XSS: "processing"})

    def no_markup_ran() -> None:
        assert page.locator("#live img").count() == 0
        assert page.locator("#live script").count() == 0
        assert page.dialogs == [] and page.errors == []

    world.open(page, "/")  # the overview names it among the worker's running jobs
    expect(page.locator("table.workers a.job-id")).to_have_text([XSS])
    no_markup_ran()

    world.open(page, "/jobs?q=onerror")
    rows = page.locator("#jobs-table tr.job")
    assert rows.count() == 1
    assert rows.first.get_attribute("data-id") == XSS
    assert rows.first.locator("a.job-id").inner_text() == XSS
    assert rows.first.locator("td.command code").inner_text() == command
    no_markup_ran()

    (workdir / "gate").touch()
    world.wait_states({XSS: "dead"})
    expect(rows.first.locator(".state")).to_have_text("dead")  # the live swap (innerHTML) escapes too
    no_markup_ran()

    with page.expect_navigation():
        rows.first.locator("a.job-id").click()
    assert page.url.startswith(world.page_url("/job?"))
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(page.url).query) == {"id": [XSS]}
    wait_live(page)
    assert page.inner_text("#job-key") == XSS
    assert page.inner_text("#job-command-shown") == command
    assert page.inner_text("#live h1 .state") == "dead"
    assert page.text_content("#attempts-table pre.tail.stdout") == f"{SCRIPT}\n{XSS}\n"
    assert page.title() == f"Job {XSS} · parallelr dashboard"
    no_markup_ran()

    world.open(page, "/dead")
    row = page.locator("#dead-table tr.job", has=page.locator("a.job-id", has_text="onerror"))
    assert row.count() == 1
    assert row.get_attribute("data-id") == XSS
    assert row.locator("a.job-id").inner_text() == XSS
    assert row.locator("td.command code").inner_text() == command
    no_markup_ran()


# -- 6. the token --------------------------------------------------------------------------------------------
def test_with_a_token_the_browser_needs_it_once_then_the_cookie_does(
    world: World, page: Any, janitor: ProcessJanitor
) -> None:
    dashboard = start_dashboard(janitor, world.home, ["--host", "127.0.0.1", "--token", "secret-T"],
                                db=world.db)
    assert dashboard.token == "secret-T" and dashboard.url.startswith("http://127.0.0.1:")
    refused = page.goto(dashboard.url)
    assert refused is not None and refused.status == 401
    assert "needs its token" in json.loads(refused.text())["error"]
    wrong = page.goto(dashboard.url + "dead?token=wrong")
    assert wrong is not None and wrong.status == 401

    landed = page.goto(dashboard.url + "jobs?state=dead&token=secret-T")
    assert landed is not None and landed.status == 200
    assert page.url == dashboard.url + "jobs?state=dead"  # the token left the address bar
    assert "token=" not in page.url
    states = page.locator("#jobs-table tr.job .state").all_inner_texts()
    assert states and set(states) == {"dead"}
    (cookie,) = [c for c in page.context.cookies() if c["name"] == token_cookie(dashboard)]
    assert cookie["value"] == "secret-T" and cookie["httpOnly"] is True

    wait_live(page)  # the event stream is let in by the cookie too
    with page.expect_navigation():
        page.click("nav a:has-text('Overview')")
    assert page.url == dashboard.url
    assert shown_counts(page) == world.api("/api/status")["counts"]
    again = page.goto(dashboard.url + "dead")
    assert again is not None and again.status == 200 and "token=" not in page.url
    assert page.dialogs == [] and page.errors == []
    assert dashboard.stop() == 0


def token_cookie(dashboard: Any) -> str:
    """The token cookie's name: one per port (a browser sends a host's cookies to all its ports)."""
    return f"parallelr_dashboard_token_{urllib.parse.urlsplit(dashboard.url).port}"


def test_a_stale_token_cookie_does_not_block_the_printed_url(
    world: World, page: Any, janitor: ProcessJanitor
) -> None:
    # the cookie of an earlier dashboard on this port, which had another token
    dashboard = start_dashboard(janitor, world.home, ["--token", "secret-T"], db=world.db)
    page.context.add_cookies([{"name": token_cookie(dashboard), "value": "old-token",
                               "url": dashboard.url}])
    landed = page.goto(dashboard.url + "?token=secret-T")
    assert landed is not None and landed.status == 200, landed and landed.text()
    assert page.url == dashboard.url
    assert dashboard.stop() == 0


# -- 7. read-only -------------------------------------------------------------------------------------------
def test_read_only_shows_no_form_and_no_buttons(world: World, page: Any, janitor: ProcessJanitor) -> None:
    dashboard = start_dashboard(janitor, world.home, ["--read-only"], db=world.db)
    assert dashboard.printed_url == dashboard.url
    assert "Dashboard (read-only): " in dashboard.output()

    def visit(path: str) -> None:
        response = page.goto(dashboard.url + path.lstrip("/"))
        assert response is not None and response.status == 200, path
        wait_live(page)
        assert page.inner_text("header .badge") == "read-only"

    visit("/")
    assert page.locator("#add-job").count() == 0
    assert page.locator("#job-submit").count() == 0
    assert shown_counts(page) == world.api("/api/status")["counts"]
    visit(job_path("seed-dead"))
    assert page.inner_text("#live h1 .state") == "dead"
    assert page.locator("#retry-button").count() == 0 and page.locator("#cancel-button").count() == 0
    visit(job_path("seed-held-1"))
    assert page.inner_text("#live h1 .state") == "pending"
    assert page.locator("#cancel-button").count() == 0 and page.locator("form").count() == 0
    visit("/dead")
    assert page.locator("#dead-table tr.job[data-id='seed-dead']").count() == 1
    assert page.locator("#retry-all").count() == 0 and page.locator(".retry-one").count() == 0
    status, body = dashboard.post_json("/api/retry", {"all": True})
    assert status == 403 and "read-only" in body["error"]
    assert world.api_job("seed-held-1")["state"] == "pending"
    assert page.dialogs == [] and page.errors == []
    assert dashboard.stop() == 0


# -- 8. live update on the overview -----------------------------------------------------------------------
def test_the_overview_counts_follow_an_enqueue_from_the_cli_without_a_reload(world: World, page: Any) -> None:
    world.open(page, "/")
    pending = int(page.inner_text("#count-pending .number"))
    total = int(page.inner_text("#count-total"))
    assert pending == world.api("/api/status")["counts"]["pending"]
    page.evaluate("window.__marker = 1")
    started = time.monotonic()
    world.enqueue([{"id": "live-1", "command": "echo live", "queue": "held"}], "live")  # held: stays pending
    expect(page.locator("#count-pending .number")).to_have_text(str(pending + 1), timeout=5_000)
    assert time.monotonic() - started < 6
    assert page.inner_text("#count-total") == str(total + 1)
    assert page.evaluate("window.__marker") == 1
    assert page.dialogs == [] and page.errors == []


# -- 9. screenshots ------------------------------------------------------------------------------------------
def test_screenshots_of_the_overview_and_of_a_run(world: World, page: Any, tmp_path: Path) -> None:
    wanted = os.environ.get("PARALLELR_SCREENSHOTS")
    shots = {"dashboard-overview.png": "/", "dashboard-run.png": f"/runs/{world.run_id}"}
    for name, path in shots.items():
        world.open(page, path)
        if name == "dashboard-overview.png":
            assert page.locator("table.workers tbody tr").count() == 1
        else:
            assert page.locator("#timeline rect.bar").count() == 4
        image = page.screenshot(path=str(tmp_path / name), full_page=True)
        assert image.startswith(b"\x89PNG\r\n\x1a\n")
        assert (tmp_path / name).read_bytes() == image
        if wanted:
            target = Path(wanted)
            target.mkdir(parents=True, exist_ok=True)
            (target / name).write_bytes(image)
            assert (target / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
