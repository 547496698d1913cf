"""``parallelr dashboard`` as a real server process, spoken to over HTTP as a script would: the JSON
API's answers after real ``queuectl`` enqueues, a real worker and a real batch run; the three
ways to start it; its command-line errors; its signals; a store that is missing, locked or
corrupt; Flask missing; the live event stream; the POST API's errors (the same words as
``queuectl``'s) and paging through many jobs.

One seeded store and dashboard (``world``) and one empty scratch store and dashboard
(``scratch``) serve the module; tests that need a store in trouble start their own. Every
process goes through a :class:`ProcessJanitor` (the module's or the test's), so none outlives it.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import pytest
from conftest import CliResult, ProcessJanitor, _wait_until, cli_env
from dashboard_support import URL_LINE, DashboardProcess, start_dashboard

QUEUECTL = (sys.executable, "-c",
            "import sys; from parallelr.cli import main_queuectl; sys.exit(main_queuectl())")
PARALLELR = (sys.executable, "-m", "parallelr")
STATES = ("pending", "scheduled", "waiting", "processing", "completed", "failed", "dead", "cancelled")
SEED = [
    {"id": "ok", "command": "echo hi"},
    {"id": "bad", "command": "echo oops >&2; exit 3", "max_retries": 1},
    {"id": "after", "command": "echo after", "depends_on": ["ok"]},
    {"id": "later", "command": "echo later", "delay": 3600},
]
EXTRA_MISSING = 'the dashboard needs Flask, which is not installed: pip install "parallelr[dashboard]"'


def run(argv: Sequence[str], home: Path, cwd: Path, env: Optional[Dict[str, str]] = None,
        timeout: float = 60) -> CliResult:
    done = subprocess.run(list(argv), env=cli_env(home, env), cwd=str(cwd), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    return CliResult(done.returncode, done.stdout, done.stderr)


QUEUECTL_MANY = """
import contextlib, io, json, sys
from parallelr.cli import main
done = []
for args in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["queue", *args], prog="queuectl")
    done.append([code, out.getvalue(), err.getvalue()])
sys.__stdout__.write(json.dumps(done))
"""


def queuectl_many(home: Path, cwd: Path, commands: Sequence[Sequence[str]]) -> List[CliResult]:
    """Each ``queuectl ARGS`` of ``commands``, one after the other in one process (the CLI's own
    main(), as the ``queuectl`` script calls it): what a user would read, at a fraction of the cost."""
    listed = json.dumps([list(args) for args in commands])
    done = run([sys.executable, "-c", QUEUECTL_MANY, listed], home, cwd)
    assert done.returncode == 0, done.output
    return [CliResult(code, out, err) for code, out, err in json.loads(done.stdout)]


def stored_states(db: Path) -> Dict[str, str]:
    """``{job ID: stored state}`` of the queue's jobs, read straight from the file."""
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return dict(connection.execute("SELECT name, state FROM jobs WHERE queue IS NOT NULL").fetchall())
    finally:
        connection.close()


def launch(janitor: ProcessJanitor, home: Path, argv: Sequence[str], out: Path,
           env: Optional[Dict[str, str]] = None) -> subprocess.Popen:
    handle = open(out, "w", encoding="utf-8")
    try:
        return janitor.popen(argv, home, stdout=handle, stderr=subprocess.STDOUT, cwd=str(home.parent),
                             env=env or {})
    finally:
        handle.close()


def printed_dashboard(proc: subprocess.Popen, out: Path, timeout: float = 20) -> DashboardProcess:
    """The dashboard ``proc`` started, once it printed its URL (as start_dashboard waits for it)."""
    def url() -> Optional[str]:
        for line in out.read_text(encoding="utf-8", errors="replace").splitlines():
            match = URL_LINE.match(line)
            if match:
                return match.group(1)
        assert proc.poll() is None, out.read_text()
        return None

    return DashboardProcess(proc, _wait_until(url, timeout, "the dashboard's URL"), out)


class World:
    """A store seeded with four jobs run by a real worker (ok completed, bad dead, after completed,
    later scheduled) and one batch run of two tasks, and a dashboard on it."""

    def __init__(self, root: Path, janitor: ProcessJanitor) -> None:
        self.root = root
        self.home = root / "home"
        self.home.mkdir()
        self.db = self.home / "parallelr" / "state.db"
        self.janitor = janitor
        self.dashboard: Optional[DashboardProcess] = None
        self.run_id = ""

    def queuectl(self, *args: str, env: Optional[Dict[str, str]] = None) -> CliResult:
        return run([*QUEUECTL, *args], self.home, self.root, env)

    def seed(self) -> None:
        jobs = self.root / "seed.jsonl"
        jobs.write_text("".join(json.dumps(job) + "\n" for job in SEED), encoding="utf-8")
        enqueued = self.queuectl("enqueue", "--file", str(jobs))
        assert enqueued.returncode == 0, enqueued.output
        tasks = self.root / "tasks"
        tasks.mkdir()
        (tasks / "a.sh").write_text("echo task a\n", encoding="utf-8")
        (tasks / "b.sh").write_text("echo task b\n", encoding="utf-8")
        worker = launch(self.janitor, self.home, [*QUEUECTL, "worker", "start", "--count", "2"],
                        self.root / "worker.out")
        with ThreadPoolExecutor(2) as pool:
            batch = pool.submit(run, [*PARALLELR, "-T", str(tasks), "-C", "bash @TASK@", "-r"], self.home,
                                self.root)
            self.dashboard = start_dashboard(self.janitor, self.home)
            assert batch.result().returncode == 0, batch.result().output
        _wait_until(lambda: {k: v for k, v in stored_states(self.db).items() if k != "later"} == {
            "ok": "succeeded", "bad": "dead", "after": "succeeded"}, 30, "the worker to run the seed jobs")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=15) == 0, (self.root / "worker.out").read_text()
        connection = sqlite3.connect(str(self.db))
        (self.run_id,) = connection.execute("SELECT id FROM runs").fetchone()
        connection.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    janitor = ProcessJanitor()
    try:
        made = World(tmp_path_factory.mktemp("world"), janitor)
        made.seed()
        yield made
        assert made.dashboard is not None
        assert made.dashboard.stop(signal.SIGTERM) == 0
        assert "Traceback" not in made.dashboard.output()
    finally:
        janitor.cleanup()


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tuple[DashboardProcess, Path, Path]]:
    """A dashboard on a store that does not exist until a test writes to it: (dashboard, db, home)."""
    janitor = ProcessJanitor()
    try:
        root = tmp_path_factory.mktemp("scratch")
        home = root / "home"
        home.mkdir()
        db = root / "scratch.db"
        dashboard = start_dashboard(janitor, home, db=db)
        yield dashboard, db, home
        assert dashboard.stop() == 0
    finally:
        janitor.cleanup()


def error_of(dashboard: DashboardProcess, path: str, status: int, **kwargs: Any) -> str:
    """The one-line error of a JSON answer with ``status``."""
    got, headers, body = dashboard.request(path, **kwargs)
    assert got == status, (path, got, body[:300])
    assert headers["Content-Type"] == "application/json"
    data = json.loads(body)
    assert data["status"] == status and set(data) == {"error", "status"}, data
    assert "\n" not in data["error"]
    return data["error"]


def page_error(dashboard: DashboardProcess, path: str, status: int) -> str:
    """The message an error page shows (one line), from a page answering ``status``."""
    got, headers, body = dashboard.request(path)
    assert got == status, (path, got, body[:300])
    assert headers["Content-Type"].startswith("text/html")
    text = body.decode("utf-8")
    found = re.findall(r'<p class="error" id="error-message">([^<\n]*)</p>', text)
    assert len(found) == 1, text
    return found[0]


# -- the API on a seeded store ---------------------------------------------------------------------
def test_status_counts_every_state_as_queuectl_status_does(world: World) -> None:
    assert world.dashboard is not None
    status = world.dashboard.get_json("/api/status")
    assert status["counts"] == {"pending": 0, "scheduled": 1, "waiting": 0, "processing": 0, "completed": 2,
                                "failed": 0, "dead": 1, "cancelled": 0}
    assert list(status["counts"]) == list(STATES)
    assert (status["total"], status["active"], status["paused"], status["workers"]) == (4, 1, [], [])
    assert status["queues"] == ["default"]
    rate = status["rate"]
    assert (rate["bucket_seconds"], len(rate["per_second"])) == (10.0, 30)
    assert round(sum(rate["per_second"]) * 10) == 3  # three attempts ended in the last five minutes
    assert rate["last_minute"] == 0.05
    cli = world.queuectl("status", "--json")
    assert cli.returncode == 0, cli.output
    assert json.loads(cli.stdout)["counts"] == status["counts"]


def test_jobs_api_lists_filters_and_shows_jobs(world: World) -> None:
    assert world.dashboard is not None
    listed = world.dashboard.get_json("/api/jobs")
    assert [job["id"] for job in listed["jobs"]] == ["later", "after", "bad", "ok"]
    assert (listed["total"], listed["next_before"]) == (4, None)
    assert listed["filter"] == {"state": [], "queue": None, "q": None}
    assert set(listed["jobs"][0]) == {"id", "command", "state", "attempts", "max_retries", "priority",
                                      "queue", "created_at", "updated_at", "run_at", "timeout", "cwd", "env",
                                      "exit_code", "last_error", "worker"}
    completed = world.dashboard.get_json("/api/jobs?state=completed&state=scheduled")
    assert [job["id"] for job in completed["jobs"]] == ["later", "after", "ok"]
    assert world.dashboard.get_json("/api/jobs?q=oops")["total"] == 1
    assert [job["id"] for job in world.dashboard.get_json("/api/jobs?limit=2")["jobs"]] == ["later", "after"]
    dead = world.dashboard.get_json("/api/dead")
    assert [(job["id"], job["exit_code"], job["attempts"]) for job in dead["jobs"]] == [("bad", 3, 1)]
    shown = world.dashboard.get_json("/api/jobs/ok")
    cli = world.queuectl("show", "ok", "--json")
    assert cli.returncode == 0, cli.output
    assert shown == json.loads(cli.stdout)
    (attempt,) = shown["attempts_detail"]
    assert (attempt["status"], attempt["exit_code"], attempt["stdout"]) == ("SUCCESS", 0, "hi\n")
    assert attempt["slot"] in (1, 2)
    assert attempt["worker"].startswith("worker:")
    after = world.dashboard.get_json("/api/jobs/after")
    assert after["depends_on"] == [{"id": "ok", "state": "completed"}]
    bad = world.dashboard.get_json("/api/jobs/bad")
    assert [(a["status"], a["exit_code"], a["stderr"]) for a in bad["attempts_detail"]] == [
        ("FAILED", 3, "oops\n")]
    assert error_of(world.dashboard, "/api/jobs/nope", 404) == "no job with ID 'nope'"
    assert error_of(world.dashboard, "/api/jobs?state=done", 400) == (
        "unknown state 'done': one of pending, scheduled, waiting, processing, completed, failed, dead, "
        "cancelled")


def test_runs_api_shows_the_batch_run_and_its_timeline(world: World) -> None:
    assert world.dashboard is not None
    (listed,) = world.dashboard.get_json("/api/runs")["runs"]
    assert (listed["id"], listed["state"], listed["command"], listed["exit_code"]) == (
        world.run_id, "finished", "bash @TASK@", 0)
    assert listed["counts"] == {"tasks": 2, "succeeded": 2, "failed": 0, "cancelled": 0, "pending": 0}
    detail = world.dashboard.get_json(f"/api/runs/{world.run_id}")
    assert [(Path(task["source"]).name, task["state"], task["position"]) for task in detail["tasks"]] == [
        ("a.sh", "succeeded", 1), ("b.sh", "succeeded", 2)]
    assert detail["next_after"] is None
    bars = detail["timeline"]["bars"]
    assert sorted((Path(bar["task"]).name, bar["status"], bar["attempt"]) for bar in bars) == [
        ("a.sh", "SUCCESS", 1), ("b.sh", "SUCCESS", 1)]
    assert detail["timeline"]["start"] <= min(bar["started_at"] for bar in bars)
    later = world.dashboard.get_json(f"/api/runs/{world.run_id}?after=1")
    assert [Path(task["source"]).name for task in later["tasks"]] == ["b.sh"]
    assert error_of(world.dashboard, "/api/runs/nope", 404) == "no batch run with ID 'nope'"
    assert error_of(world.dashboard, f"/api/runs/{world.run_id}?after=x", 400) == (
        "after must be a whole number, not 'x'")


def test_every_page_answers_with_the_stores_values(world: World) -> None:
    assert world.dashboard is not None
    pages = {
        "/": ['<span class="number" data-state="completed">2</span>', 'id="count-total">4<'],
        "/jobs": ['id="jobs-total">4<', 'data-id="later"'],
        "/jobs?state=dead": ['id="jobs-total">1<', 'data-id="bad"'],
        "/jobs/ok": ['id="job-key">ok<', "<pre class=\"tail stdout\">hi\n</pre>"],
        "/dead": ['id="dead-total">1<', 'data-id="bad"'],
        "/runs": [f'href="/runs/{world.run_id}"'],
        f"/runs/{world.run_id}": ['<rect class="bar ok"', "a.sh</code>"],
    }
    for path, expected in pages.items():
        status, _headers, body = world.dashboard.request(path)
        assert status == 200, (path, status)
        text = body.decode("utf-8")
        for piece in expected:
            assert piece in text, (path, piece)


# -- the POST API's errors are queuectl's --------------------------------------------------------
BAD_JOBS = [
    '{"command": 5}',
    '{"id": "no-command"}',
    '{"command": "  "}',
    '{"command": "true", "max_retries": -1}',
    '{"command": "true", "prio": 1}',
    '{"command": "true", "queue": "no such queue"}',
    '{"command": "true", "env": {"A": 1}}',
    '{"command": "true", "run_at": "tomorrow"}',
    '{"command": "true", "id": "self", "depends_on": ["self"]}',
    '{"id": "dep", "command": "true", "depends_on": ["nobody"]}',
    '{"id": "ok", "command": "true"}',  # a duplicate
    '"echo hi"',  # JSON, but not a job object
    "null",
]


def test_the_post_api_refuses_a_bad_job_with_queuectls_message(world: World) -> None:
    assert world.dashboard is not None
    by_cli = queuectl_many(world.home, world.root, [("enqueue", text) for text in BAD_JOBS])
    differ = []
    for text, cli in zip(BAD_JOBS, by_cli):
        assert cli.returncode in (1, 2), (text, cli.output)
        assert cli.stdout == ""
        (line,) = cli.stderr.splitlines()
        assert line.startswith("queuectl: error: "), line
        expected = {"error": line[len("queuectl: error: "):], "status": 400}
        status, body = world.dashboard.post_json("/api/jobs", json.loads(text))
        if (status, body) != (400, expected):
            differ.append((text, status, body["error"], expected["error"]))
    assert differ == []
    assert world.dashboard.get_json("/api/status")["total"] == 4


def test_the_post_api_refuses_a_body_that_is_not_json(world: World) -> None:
    assert world.dashboard is not None
    csrf = world.dashboard.get_json("/api/session")["csrf_token"]
    headers = {"Content-Type": "application/json", "X-CSRF-Token": csrf}
    not_json = error_of(world.dashboard, "/api/jobs", 400, method="POST", data=b'{"command": "true"}',
                        headers={**headers, "Content-Type": "text/plain"})
    assert not_json == "the request body must be JSON (Content-Type: application/json)"
    # broken JSON: the parser's words, as queuectl enqueue gives them
    for data, expected in ((b'{"command": ', "invalid JSON: Expecting value: line 1 column 13 (char 12)"),
                           (b"", "invalid JSON: Expecting value: line 1 column 1 (char 0)"),
                           (b"\xff\xfe", "invalid JSON: Expecting value: line 1 column 1 (char 0)")):
        assert error_of(world.dashboard, "/api/jobs", 400, method="POST", data=data, headers=headers) \
            == expected, data
    assert error_of(world.dashboard, "/api/retry", 400, method="POST", data=b"nope", headers=headers) \
        == "invalid JSON: Expecting value: line 1 column 1 (char 0)"


def test_retry_and_cancel_refuse_what_queuectl_refuses(world: World) -> None:
    assert world.dashboard is not None
    retry_ok, retry_nope, cancel_ok, cancel_nope = queuectl_many(world.home, world.root, [
        ("dlq", "retry", "ok"), ("dlq", "retry", "bad", "nope"), ("cancel", "ok"), ("cancel", "nope")])
    cases = [
        ("/api/retry", {"ids": ["ok"]}, 400, retry_ok),
        ("/api/retry", {"ids": ["bad", "nope"]}, 404, retry_nope),
        ("/api/cancel", {"id": "ok"}, 400, cancel_ok),
        ("/api/cancel", {"id": "nope"}, 404, cancel_nope),
    ]
    for path, payload, status, cli in cases:
        (line,) = cli.stderr.splitlines()
        assert cli.returncode != 0 and line.startswith("queuectl: error: "), cli.output
        assert world.dashboard.post_json(path, payload) == (
            status, {"error": line[len("queuectl: error: "):], "status": status}), (path, payload)
    assert world.dashboard.post_json("/api/retry", {"ids": ["ok"]})[1]["error"] == (
        "job 'ok' is completed, not dead: only dead jobs can be retried")
    assert world.dashboard.post_json("/api/cancel", {"id": "nope"})[1]["error"] == (
        "no job with ID 'nope' (see 'queuectl list')")
    ids_message = '"ids" must be a non-empty list of job IDs (strings), or send {"all": true}'
    for path, payload, message in (
        ("/api/retry", {"ids": []}, ids_message),
        ("/api/retry", {"ids": "bad"}, ids_message),
        ("/api/retry", {"ids": ["bad", 7]}, ids_message),
        ("/api/retry", [], 'send {"ids": ["ID", ...]} or {"all": true}'),
        ("/api/cancel", {"id": ""}, 'send {"id": "JOB ID"}'),
        ("/api/cancel", {"key": "ok"}, 'send {"id": "JOB ID"}'),
    ):
        assert world.dashboard.post_json(path, payload) == (400, {"error": message, "status": 400}), payload
    assert stored_states(world.db) == {"ok": "succeeded", "bad": "dead", "after": "succeeded",
                                       "later": "pending"}


# -- starting it ------------------------------------------------------------------------------------
def test_queuectl_dashboard_and_parallelr_queue_dashboard_start_the_same_server(janitor: ProcessJanitor,
                                                                                 home: Path) -> None:
    other = home.parent / "other" / "queue.db"
    default = home / "parallelr" / "state.db"
    starts = [
        ([*QUEUECTL, "dashboard", "--port", "0"], default),
        ([*PARALLELR, "queue", "dashboard", "--port", "0"], default),
        ([*QUEUECTL, "--db", str(other), "dashboard", "--port", "0"], other),
    ]
    procs = [launch(janitor, home, argv, home / f"start{n}.out") for n, (argv, _db) in enumerate(starts)]
    dashboards = [printed_dashboard(proc, home / f"start{n}.out") for n, proc in enumerate(procs)]
    for dashboard, (argv, db) in zip(dashboards, starts):
        port = int(dashboard.url.rsplit(":", 1)[1].rstrip("/"))
        (line,) = dashboard.output().splitlines()
        assert line == f"Dashboard: http://127.0.0.1:{port}/  store {db}  (Ctrl+C stops it)", argv
        assert dashboard.get_json("/api/session")["store"] == str(db)
        assert error_of(dashboard, "/api/jobs", 503).startswith(f"there is no store at {db} yet"), argv
    for dashboard, signum in zip(dashboards, (signal.SIGINT, signal.SIGTERM, signal.SIGINT)):
        dashboard.proc.send_signal(signum)
    for dashboard in dashboards:
        assert dashboard.proc.wait(timeout=10) == 0
        assert dashboard.output().splitlines()[1:] == ["Dashboard stopped"]
    assert not default.exists() and not other.parent.exists()  # reading never creates the store


def test_sigint_and_sigterm_stop_it_with_exit_0_even_with_a_live_stream_open(janitor: ProcessJanitor,
                                                                            home: Path) -> None:
    outs = [home / "sigint.out", home / "sigterm.out"]
    procs = [launch(janitor, home, [*PARALLELR, "dashboard", "--port", "0"], out) for out in outs]
    dashboards = [printed_dashboard(proc, out) for proc, out in zip(procs, outs)]
    streams = [urllib.request.urlopen(dashboard.url + "api/events", timeout=10) for dashboard in dashboards]
    for stream in streams:
        assert stream.readline() == b"retry: 1000\n"
    started = time.monotonic()
    for dashboard, signum in zip(dashboards, (signal.SIGINT, signal.SIGTERM)):
        dashboard.proc.send_signal(signum)
    for dashboard, signum in zip(dashboards, (signal.SIGINT, signal.SIGTERM)):
        assert dashboard.proc.wait(timeout=10) == 0, signum  # (stop() would signal it again)
    assert time.monotonic() - started < 5
    for dashboard, stream in zip(dashboards, streams):
        stream.close()
        output = dashboard.output()
        assert output.splitlines()[1:] == ["Dashboard stopped"], output
        assert "Traceback" not in output and "KeyboardInterrupt" not in output


def test_bad_command_lines_exit_2_with_one_line(run_cli: Any) -> None:
    cases = [
        (["dashboard", "--port", "abc"],
         "parallelr: error: argument --port: 'abc' is not a port number (see parallelr dashboard --help)"),
        (["dashboard", "--port", "70000"],
         "parallelr: error: argument --port: 70000 is not a port number (0 to 65535; 0: any free port) "
         "(see parallelr dashboard --help)"),
        (["dashboard", "--bogus"],
         "parallelr: error: unrecognized arguments: --bogus (see parallelr dashboard --help)"),
        (["dashboard", "--token", "  "],
         "parallelr: error: --token is empty: give a token, or leave it out to have one generated"),
    ]
    with ThreadPoolExecutor(len(cases)) as pool:
        results = list(pool.map(lambda case: run_cli(case[0], timeout=30), cases))
    for (args, line), result in zip(cases, results):
        assert result.returncode == (1 if "--token" in args else 2), (args, result.output)
        assert (result.stdout, result.stderr) == ("", line + "\n"), args


def test_a_port_in_use_is_a_one_line_error(run_cli: Any, home: Path) -> None:
    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = run_cli(["dashboard", "--port", str(port)], timeout=30)
    finally:
        taken.close()
    assert result.returncode == 1, result.output
    assert (result.stdout, result.stderr) == (
        "", f"parallelr: error: cannot listen on 127.0.0.1:{port}: Address already in use\n")
    assert not (home / "parallelr" / "state.db").exists()


def test_without_flask_it_says_how_to_get_it(home: Path, tmp_path: Path) -> None:
    fake = tmp_path / "no-flask"
    fake.mkdir()
    (fake / "flask.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'flask'\", name='flask')\n", encoding="utf-8")
    env = cli_env(home, {"PYTHONPATH": str(fake)})
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda argv: subprocess.run(
            [*argv, "--port", "0"], env=env, cwd=str(tmp_path), capture_output=True, text=True, timeout=30,
            stdin=subprocess.DEVNULL), [[*PARALLELR, "dashboard"], [*QUEUECTL, "dashboard"]]))
    for result, prog in zip(results, ("parallelr", "queuectl")):
        assert result.returncode == 1, result.stderr
        assert (result.stdout, result.stderr) == ("", f"{prog}: error: {EXTRA_MISSING}\n")
    check = subprocess.run([sys.executable, "-c", "import flask"], env=env, capture_output=True, text=True,
                           timeout=30)
    assert "No module named 'flask'" in check.stderr  # the fake did stand in for Flask


# -- a store in trouble ---------------------------------------------------------------------------
def test_a_missing_store_answers_503_until_it_is_created(janitor: ProcessJanitor, home: Path,
                                                         tmp_path: Path) -> None:
    db = tmp_path / "not" / "yet" / "state.db"
    dashboard = start_dashboard(janitor, home, db=db)
    message = (f"there is no store at {db} yet: it is created when the first job is enqueued or the first "
               "batch run is recorded")
    for path in ("/api/status", "/api/jobs", "/api/jobs/x", "/api/dead", "/api/runs", "/api/runs/x"):
        assert error_of(dashboard, path, 503) == message, path
    for path in ("/jobs", "/jobs/x", "/dead", "/runs", "/runs/x"):
        assert page_error(dashboard, path, 503) == message, path
    status, _headers, body = dashboard.request("/")  # the overview: zeros, the note and the add-job form
    assert status == 200
    assert f'<p class="notice" id="store-notice">{message}</p>' in body.decode()
    assert not db.parent.parent.exists()
    enqueued = run([*QUEUECTL, "--db", str(db), "enqueue", '{"id": "first", "command": "true"}'], home,
                   tmp_path)
    assert enqueued.returncode == 0, enqueued.output
    assert dashboard.get_json("/api/status")["counts"]["pending"] == 1
    assert [job["id"] for job in dashboard.get_json("/api/jobs")["jobs"]] == ["first"]
    status, _headers, body = dashboard.request("/jobs/first")
    assert status == 200 and b'id="store-notice"' not in dashboard.request("/")[2]
    assert dashboard.stop() == 0
    assert "Traceback" not in dashboard.output()


def test_a_locked_store_answers_503_and_recovers_once_released(janitor: ProcessJanitor, home: Path,
                                                               tmp_path: Path) -> None:
    db = tmp_path / "locked.db"
    enqueued = run([*QUEUECTL, "--db", str(db), "enqueue", '{"id": "one", "command": "true"}'], home,
                   tmp_path)
    assert enqueued.returncode == 0, enqueued.output
    # In WAL mode every open connection holds a shared lock: the exclusive one is taken first.
    holder = sqlite3.connect(str(db), isolation_level=None, timeout=5)
    try:
        holder.execute("PRAGMA locking_mode=EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        holder.execute("UPDATE jobs SET priority = priority WHERE name = 'one'")
        dashboard = start_dashboard(janitor, home, db=db)
        message = f"cannot use the job store {db}: database is locked"
        with ThreadPoolExecutor(2) as pool:  # each waits out the busy timeout (2 s)
            api = pool.submit(error_of, dashboard, "/api/jobs", 503)
            page = pool.submit(page_error, dashboard, "/jobs", 503)
            assert (api.result(), page.result()) == (message, message)
        holder.execute("COMMIT")
    finally:
        holder.close()
    assert dashboard.get_json("/api/jobs")["total"] == 1
    assert dashboard.request("/jobs")[0] == 200
    assert dashboard.stop() == 0
    assert "Traceback" not in dashboard.output()


def test_a_corrupt_store_answers_503_in_one_line(janitor: ProcessJanitor, home: Path, tmp_path: Path) -> None:
    db = tmp_path / "corrupt.db"
    db.write_bytes(b"this is not a database, only some text that is long enough to look like a header\n" * 64)
    before = db.read_bytes()
    dashboard = start_dashboard(janitor, home, db=db)
    message = f"cannot use the job store {db}: file is not a database"
    for path in ("/api/status", "/api/jobs", "/api/runs"):
        assert error_of(dashboard, path, 503) == message, path
    for path in ("/", "/jobs", "/runs"):
        assert page_error(dashboard, path, 503) == message, path
    time.sleep(0.6)  # the change feed polls it a couple of times meanwhile
    assert db.read_bytes() == before
    assert dashboard.stop() == 0
    output = dashboard.output()
    assert "Traceback" not in output
    assert len(output.splitlines()) == 2, output  # the URL line and "Dashboard stopped"


# -- live updates and paging ----------------------------------------------------------------------
def test_the_event_stream_says_when_another_process_changed_the_store(scratch: Any) -> None:
    dashboard, db, home = scratch
    events: List[Tuple[str, str]] = []
    changed = threading.Event()
    hello = threading.Event()

    def listen() -> None:
        with urllib.request.urlopen(dashboard.url + "api/events", timeout=15) as stream:
            assert stream.headers["Content-Type"].startswith("text/event-stream")
            name = ""
            for raw in stream:
                line = raw.decode("utf-8").rstrip("\n")
                if line.startswith("event: "):
                    name = line[len("event: "):]
                elif line.startswith("data: "):
                    events.append((name, line[len("data: "):]))
                    if name == "hello":
                        hello.set()
                    elif name == "change":
                        changed.set()
                        return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert hello.wait(10), events
    enqueued = run([*QUEUECTL, "--db", str(db), "enqueue", '{"command": "true", "queue": "sse"}'], home,
                   db.parent)
    assert enqueued.returncode == 0, enqueued.output
    assert changed.wait(10), events
    listener.join(5)
    (first, first_version), (second, second_version) = events
    assert (first, second) == ("hello", "change")
    assert int(second_version) > int(first_version)


def test_paging_through_1200_jobs_visits_each_once(scratch: Any) -> None:
    dashboard, _db, _home = scratch
    expected = [f"page-{n:04d}" for n in range(1200)]
    for chunk in (expected[:600], expected[600:]):
        status, body = dashboard.post_json("/api/jobs", [{"id": key, "command": "true", "queue": "paging"}
                                                        for key in chunk])
        assert (status, body) == (201, {"ids": chunk})
    seen: List[str] = []
    query = "/api/jobs?queue=paging&limit=500"
    pages = []
    while True:
        page = dashboard.get_json(query)
        pages.append(len(page["jobs"]))
        assert page["total"] == 1200
        seen.extend(job["id"] for job in page["jobs"])
        if page["next_before"] is None:
            break
        query = f"/api/jobs?queue=paging&limit=500&before={page['next_before']}"
    assert pages == [500, 500, 200]
    assert seen == list(reversed(expected))
    assert len(set(seen)) == 1200
    assert dashboard.get_json("/api/jobs?queue=paging&q=page-11&limit=500")["total"] == 100


def test_queuectl_help_lists_the_dashboard_and_its_own_help_names_it(home: Path, tmp_path: Path) -> None:
    listing = run([*QUEUECTL, "--help"], home, tmp_path)
    assert listing.returncode == 0
    assert listing.stdout.splitlines()[-2:] == [
        "also:",
        "  queuectl dashboard ...  the live web dashboard of the queue and the batch runs "
        "(also: queuectl dashboard)",
    ]
    own = run([*QUEUECTL, "dashboard", "--help"], home, tmp_path)
    assert own.returncode == 0 and own.stdout.startswith("usage: queuectl dashboard [-h] [--host HOST]")
    nested = run([*PARALLELR, "queue", "dashboard", "--help"], home, tmp_path)
    assert nested.returncode == 0 and nested.stdout.startswith("usage: parallelr queue dashboard [-h]")


# -- a PostgreSQL store -----------------------------------------------------------------------------
def test_the_dashboard_reads_and_acts_on_a_postgresql_store(janitor: ProcessJanitor, home: Path,
                                                            tmp_path: Path, postgres_url: str) -> None:
    url = postgres_url.replace("postgresql://postgres@", "postgresql://postgres:not-shown@")  # trust: any
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("".join(json.dumps(job) + "\n" for job in SEED[:2] + SEED[3:]), encoding="utf-8")
    enqueued = run([*QUEUECTL, "--db", url, "enqueue", "--file", str(jobs)], home, tmp_path)
    assert enqueued.stdout.splitlines() == ["ok", "bad", "later"], enqueued.output
    dashboard = start_dashboard(janitor, home, db=url)  # type: ignore[arg-type]
    assert dashboard.output().splitlines()[0].endswith(
        f"  store {url.replace(':not-shown@', ':***@')}  (Ctrl+C stops it)")
    status = dashboard.get_json("/api/status")
    assert {state: n for state, n in status["counts"].items() if n} == {"pending": 2, "scheduled": 1}
    listed = dashboard.get_json("/api/jobs?state=scheduled")
    assert [job["id"] for job in listed["jobs"]] == ["later"]
    code, body = dashboard.post_json("/api/jobs", {"id": "web", "command": "echo web", "priority": 5})
    assert (code, body) == (201, {"ids": ["web"]})
    code, body = dashboard.post_json("/api/cancel", {"id": "later"})
    assert code == 200, body
    shown = json.loads(run([*QUEUECTL, "--db", url, "list", "--json"], home, tmp_path).stdout)
    assert sorted((job["id"], job["state"]) for job in shown) == [
        ("bad", "pending"), ("later", "cancelled"), ("ok", "pending"), ("web", "pending")]
    assert dashboard.stop() == 0
    assert "not-shown" not in dashboard.output() and "Traceback" not in dashboard.output()
