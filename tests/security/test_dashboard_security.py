"""The dashboard against hostile data and hostile requests, over real HTTP to real server processes:
markup in job IDs, commands, environment values, output tails and batch task names is escaped
on every page (and a Content-Security-Policy forbids inline scripts anyway); GET changes nothing;
POST needs the CSRF token; another Host is refused (DNS rebinding); the token, the cookie,
read-only mode and the body limit; the file mode of a store the dashboard creates; and the
address it listens on.

A store seeded with hostile jobs (run by a real worker) and a hostile batch run is served by a
dashboard (``site``) and by a read-only one; a third dashboard requires a token and starts on a
store that does not exist yet. All of them are stopped by PID at the end of the module.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import urllib.parse
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import psutil
import pytest
from conftest import CliResult, ProcessJanitor, _wait_until, cli_env
from dashboard_support import DashboardProcess, start_dashboard

QUEUECTL = (sys.executable, "-c",
            "import sys; from parallelr.cli import main_queuectl; sys.exit(main_queuectl())")
PARALLELR = (sys.executable, "-m", "parallelr")
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")

# The payloads, each where a user's data lands.
ID_XSS = '<script>alert("id")</script>'  # a job ID (it fails: dead, and its dependent dies naming it)
COMMAND_XSS = "<img src=x onerror=alert(1)>"  # in a command line (echoed: also in the output)
OUT_XSS = "<script>alert(2)</script>"  # printed by a job: its stdout tail
ERR_XSS = "<iframe src=javascript:alert(3)></iframe>"  # its stderr tail
ENV_XSS = '"><svg onload=alert(4)>'  # an environment value (breaks out of an attribute if unescaped)
TASK_XSS = "<svg onload=alert(5)>"  # a batch task's file name
TASK_OUT_XSS = "<b onmouseover=alert(6)>task</b>"  # the task's command line shows its file; its output
SEARCH_XSS = '"><script>alert(7)</script>'  # the jobs search box's value
QUEUE_XSS = '"><script>alert(8)</script>'  # a queue name (refused), shown back in the add-job form
PAYLOADS = (ID_XSS, COMMAND_XSS, OUT_XSS, ERR_XSS, ENV_XSS, TASK_XSS, SEARCH_XSS, QUEUE_XSS)
BINARY_OUTPUT = "printf 'ansi \\033[31mred\\033[0m nul \\000 here bytes \\377\\376 end\\n'"

SEED: List[Dict[str, Any]] = [
    {"id": ID_XSS, "command": f"echo '{ERR_XSS}' >&2; exit 1", "max_retries": 1},
    {"id": "child", "command": "true", "depends_on": [ID_XSS]},
    {"id": "cmd", "command": f"echo '{COMMAND_XSS}'; echo '{OUT_XSS}'"},
    {"id": "env", "command": "true", "env": {"HTML_VALUE": ENV_XSS}},
    {"id": "binary", "command": BINARY_OUTPUT},
    {"id": "waits", "command": "true", "delay": 3600},
]


def escaped(text: str) -> str:
    """``text`` as the templates' autoescaping writes it."""
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&#34;")
            .replace("'", "&#39;"))


class Parsed(HTMLParser):
    """A page's elements, attributes and text, as a browser's parser would see them."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: List[Tuple[str, Dict[str, Optional[str]]]] = []
        self.script_text: List[str] = []
        self.text: List[str] = []
        self._in_script = False
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: List[Tuple[str, Optional[str]]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        (self.script_text if self._in_script else self.text).append(data)

    @property
    def all_text(self) -> str:
        return "".join(self.text)

    def attribute_values(self) -> List[str]:
        return [value for _tag, attrs in self.tags for value in attrs.values() if value]


def assert_harmless(html: str, where: str) -> Parsed:
    """Nothing in the page is an element, attribute or script a payload made."""
    for payload in (*PAYLOADS, TASK_OUT_XSS):
        assert payload not in html, (where, payload)
    parsed = Parsed(html)
    scripts = [attrs for tag, attrs in parsed.tags if tag == "script"]
    assert scripts == [{"src": "/static/dashboard.js", "defer": None}], (where, scripts)
    assert "".join(parsed.script_text).strip() == "", where
    for tag, attrs in parsed.tags:
        assert tag not in ("img", "iframe", "object", "embed", "b", "base"), (where, tag, attrs)
        assert not any(name.startswith("on") for name in attrs), (where, tag, attrs)
        if tag == "svg":
            assert attrs.get("id") == "timeline" or attrs.get("class") == "sparkline", (where, attrs)
        for name in ("href", "src", "action"):
            value = attrs.get(name) or ""
            assert not value.strip().lower().startswith(("javascript:", "data:text")), (where, tag, attrs)
    return parsed


def run(argv: Sequence[str], home: Path, cwd: Path, env: Optional[Dict[str, str]] = None,
        timeout: float = 60) -> CliResult:
    done = subprocess.run(list(argv), env=cli_env(home, env), cwd=str(cwd), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    return CliResult(done.returncode, done.stdout, done.stderr)


def snapshot(db: Path) -> Dict[str, List[Tuple[Any, ...]]]:
    """Everything the store holds, to compare before and after."""
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return {table: connection.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
                for table in ("jobs", "attempts", "job_deps", "runs", "settings")}
    finally:
        connection.close()


def job_ids(db: Path) -> List[str]:
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return sorted(name for (name,) in connection.execute("SELECT name FROM jobs WHERE queue IS NOT NULL"))
    finally:
        connection.close()


def job_path(key: str) -> str:
    return "/jobs/" + urllib.parse.quote(key, safe="")


class Site:
    """The hostile store, its worker's results, and the dashboards on it."""

    def __init__(self, root: Path, janitor: ProcessJanitor) -> None:
        self.root = root
        self.home = root / "home"
        self.home.mkdir()
        self.db = self.home / "parallelr" / "state.db"
        self.janitor = janitor
        self.run_id = ""
        self.dashboard: Optional[DashboardProcess] = None
        self.read_only: Optional[DashboardProcess] = None

    def seed(self) -> None:
        jobs = self.root / "seed.jsonl"
        jobs.write_text("".join(json.dumps(job) + "\n" for job in SEED), encoding="utf-8")
        enqueued = run([*QUEUECTL, "enqueue", "--file", str(jobs)], self.home, self.root)
        assert enqueued.returncode == 0, enqueued.output
        tasks = self.root / "tasks"
        tasks.mkdir()
        (tasks / f"{TASK_XSS}.sh").write_text(f"echo '{TASK_OUT_XSS}'\n", encoding="utf-8")
        out = open(self.root / "worker.out", "w", encoding="utf-8")
        worker = self.janitor.popen([*QUEUECTL, "worker", "start", "--count", "2"], self.home, stdout=out,
                                    stderr=subprocess.STDOUT, cwd=str(self.root))
        out.close()
        batch = run([*PARALLELR, "-T", str(tasks), "-C", "bash @TASK@", "-r"], self.home, self.root)
        assert batch.returncode == 0, batch.output
        finished = {ID_XSS: "dead", "child": "dead", "cmd": "succeeded", "env": "succeeded",
                    "binary": "succeeded"}

        def settled() -> bool:
            connection = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5)
            try:
                states = dict(connection.execute("SELECT name, state FROM jobs WHERE queue IS NOT NULL"))
            finally:
                connection.close()
            return all(states.get(key) == state for key, state in finished.items())

        _wait_until(settled, 30, "the worker to run the hostile jobs")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=15) == 0, (self.root / "worker.out").read_text()
        connection = sqlite3.connect(str(self.db))
        (self.run_id,) = connection.execute("SELECT id FROM runs").fetchone()
        connection.close()
        self.dashboard = start_dashboard(self.janitor, self.home)
        self.read_only = start_dashboard(self.janitor, self.home, ["--read-only"])

    @property
    def pages(self) -> Dict[str, List[str]]:
        """Every page, and the payloads it shows (as text, escaped)."""
        return {
            "/": [],
            "/jobs": [ID_XSS, COMMAND_XSS],
            "/jobs?q=" + urllib.parse.quote(SEARCH_XSS): [SEARCH_XSS],
            "/jobs?q=" + urllib.parse.quote("<img"): [COMMAND_XSS],
            job_path(ID_XSS): [ID_XSS, ERR_XSS],
            "/jobs/child": [ID_XSS],
            "/jobs/cmd": [COMMAND_XSS, OUT_XSS],
            "/jobs/env": [ENV_XSS],
            "/jobs/binary": [],
            "/dead": [ID_XSS],
            "/runs": [],
            f"/runs/{self.run_id}": [TASK_XSS],
        }


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    janitor = ProcessJanitor()
    try:
        made = Site(tmp_path_factory.mktemp("hostile"), janitor)
        made.seed()
        yield made
        for dashboard in (made.dashboard, made.read_only):
            assert dashboard is not None
            assert dashboard.stop() == 0
            assert "Traceback" not in dashboard.output()
    finally:
        janitor.cleanup()


class Guarded:
    def __init__(self, dashboard: DashboardProcess, token: str, db: Path) -> None:
        self.dashboard = dashboard
        self.token = token
        self.db = db

    @property
    def cookie(self) -> str:
        """The token cookie's name: one per port (a host's cookies go to all its ports)."""
        return "parallelr_dashboard_token_" + self.dashboard.url.rsplit(":", 1)[1].rstrip("/")

    @property
    def bearer(self) -> Dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guarded]:
    """A dashboard that needs its token, on a store that does not exist yet; started with umask 022."""
    janitor = ProcessJanitor()
    try:
        root = tmp_path_factory.mktemp("guarded")
        home = root / "home"
        home.mkdir()
        token = "tok-" + secrets.token_urlsafe(16)
        db = root / "private" / "state.db"
        old_umask = os.umask(0o022)
        try:
            dashboard = start_dashboard(janitor, home, ["--token", token], db=db)
        finally:
            os.umask(old_umask)
        yield Guarded(dashboard, token, db)
        assert dashboard.stop() == 0
    finally:
        janitor.cleanup()


def body_of(dashboard: DashboardProcess, path: str, **kwargs: Any) -> Tuple[int, Dict[str, str], str]:
    status, headers, body = dashboard.request(path, **kwargs)
    return status, headers, body.decode("utf-8")


def csrf_of(dashboard: DashboardProcess, **kwargs: Any) -> str:
    return dashboard.get_json("/api/session", **kwargs)["csrf_token"]


def form_post(dashboard: DashboardProcess, path: str, fields: Dict[str, str],
              headers: Optional[Dict[str, str]] = None) -> Tuple[int, Dict[str, str], str]:
    data = urllib.parse.urlencode(fields).encode()
    return body_of(dashboard, path, method="POST", data=data,
                   headers={"Content-Type": "application/x-www-form-urlencoded", **(headers or {})})


# -- escaping ----------------------------------------------------------------------------------------
def test_the_hostile_data_is_stored_as_it_was_given(site: Site) -> None:
    """(The payloads reached the store unchanged, so the pages below do have them to show.)"""
    assert site.dashboard is not None
    shown = site.dashboard.get_json(job_path(ID_XSS).replace("/jobs/", "/api/jobs/", 1))
    assert (shown["id"], shown["state"]) == (ID_XSS, "dead")
    assert shown["attempts_detail"][0]["stderr"] == ERR_XSS + "\n"
    assert site.dashboard.get_json("/api/jobs/cmd")["attempts_detail"][0]["stdout"] == (
        f"{COMMAND_XSS}\n{OUT_XSS}\n")
    assert site.dashboard.get_json("/api/jobs/env")["env"] == {"HTML_VALUE": ENV_XSS}
    assert site.dashboard.get_json("/api/jobs/child")["last_error"] == f"its dependency {ID_XSS} is dead"
    binary = site.dashboard.get_json("/api/jobs/binary")["attempts_detail"][0]["stdout"]
    assert binary == "ansi \x1b[31mred\x1b[0m nul \x00 here bytes \ufffd\ufffd end\n"
    (task,) = site.dashboard.get_json(f"/api/runs/{site.run_id}")["tasks"]
    assert Path(task["source"]).name == f"{TASK_XSS}.sh"


def test_every_page_escapes_the_hostile_data(site: Site) -> None:
    assert site.dashboard is not None
    for path, shown in site.pages.items():
        status, headers, html = body_of(site.dashboard, path)
        assert status == 200, (path, status)
        assert headers["Content-Type"] == "text/html; charset=utf-8"
        parsed = assert_harmless(html, path)
        for payload in shown:
            assert escaped(payload) in html, (path, payload)
            assert payload in parsed.all_text + "".join(parsed.attribute_values()), (path, payload)


def test_the_live_fragments_escape_the_hostile_data(site: Site) -> None:
    assert site.dashboard is not None
    for path, shown in site.pages.items():
        status, _headers, html = body_of(site.dashboard, path, headers={"X-Live": "1"})
        assert status == 200, path
        for payload in (*PAYLOADS, TASK_OUT_XSS):
            assert payload not in html, (path, payload)
        assert "<script" not in html, path
        for payload in shown:
            if payload is not SEARCH_XSS:  # the search box is outside the live block
                assert escaped(payload) in html, (path, payload)


def test_control_characters_of_an_output_tail_are_not_written_raw(site: Site) -> None:
    assert site.dashboard is not None
    status, _headers, body = site.dashboard.request("/jobs/binary")
    assert status == 200
    html = body.decode("utf-8")  # valid UTF-8: undecodable bytes were replaced
    assert "[31mred" in html and " here bytes \ufffd\ufffd end" in html
    tail = re.search(r'<pre class="tail stdout">(.*?)</pre>', html, re.S)
    assert tail is not None, html
    raw = sorted({f"U+{ord(char):04X}" for char in tail.group(1) if ord(char) < 32 and char not in "\t\n\r"})
    assert raw == [], f"raw control characters in the page: {raw}"


def test_the_error_of_a_refused_form_escapes_what_was_typed(site: Site) -> None:
    assert site.dashboard is not None
    before = job_ids(site.db)
    status, _headers, html = form_post(site.dashboard, "/actions/enqueue", {
        "csrf_token": csrf_of(site.dashboard), "command": f"echo '{OUT_XSS}'", "id": ID_XSS + "-2",
        "queue": QUEUE_XSS})
    assert status == 400
    assert_harmless(html, "the refused form")
    expected = (f"bad \"queue\" {QUEUE_XSS!r}: a queue name is 1 to 100 letters, digits or '_.:-', starting "
                "with a letter or digit")
    assert f'<p class="error" id="form-error" role="alert">{escaped(expected)}</p>' in html
    assert f'value="{escaped(QUEUE_XSS)}"' in html and f'value="{escaped(ID_XSS + "-2")}"' in html
    assert job_ids(site.db) == before
    refused, body = site.dashboard.post_json("/api/jobs", {"command": "true", "queue": QUEUE_XSS})
    assert (refused, body) == (400, {"error": expected, "status": 400})


def test_every_response_forbids_inline_scripts_and_framing(site: Site) -> None:
    assert site.dashboard is not None
    paths = [*site.pages, "/api/status", "/api/jobs/nope", "/jobs/nope", "/actions/retry",
             "/static/dashboard.js",
             "/api/session"]
    for path in paths:
        status, headers, _body = site.dashboard.request(path)
        assert status in (200, 404, 405), (path, status)
        assert headers["Content-Security-Policy"] == CSP, path
        assert headers["X-Frame-Options"] == "DENY" and headers["X-Content-Type-Options"] == "nosniff", path
        assert headers["Referrer-Policy"] == "no-referrer", path
    directives = dict(part.strip().split(" ", 1) for part in CSP.split(";"))
    assert directives["script-src"] == "'self'" and directives["default-src"] == "'none'"
    assert directives["frame-ancestors"] == "'none'" and directives["form-action"] == "'self'"


# -- GET changes nothing; POST needs the CSRF token ---------------------------------------------------
def test_get_on_an_action_is_refused_and_changes_nothing(site: Site) -> None:
    assert site.dashboard is not None
    before = snapshot(site.db)
    marker = site.root / "created-by-get"
    csrf = csrf_of(site.dashboard)
    query = urllib.parse.urlencode({"command": f"touch {marker}", "id": "by-get", "csrf_token": csrf,
                                    "all": "1"})
    for path in ("/actions/enqueue", "/actions/retry", "/actions/cancel", "/api/retry", "/api/cancel"):
        for method in ("GET", "HEAD"):
            status, _headers, _body = site.dashboard.request(f"{path}?{query}&id=child", method=method,
                                                             headers={"X-CSRF-Token": csrf})
            assert status == 405, (method, path, status)
    status, _headers, _body = site.dashboard.request(f"/api/jobs?{query}", headers={"X-CSRF-Token": csrf})
    assert status == 200  # a GET of the jobs list lists them: it does not enqueue
    for path in site.pages:
        assert site.dashboard.request(path)[0] == 200
    assert snapshot(site.db) == before
    assert not marker.exists()


def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(site: Site) -> None:
    assert site.dashboard is not None
    before = snapshot(site.db)
    message = "the request lacks the CSRF token of this page: reload it and try again"
    cross_site = {"Origin": "http://evil.example", "Referer": "http://evil.example/attack.html"}
    for fields in ({"command": "touch /tmp/pwned", "id": "csrf-1"},
                   {"command": "touch /tmp/pwned", "id": "csrf-2", "csrf_token": ""},
                   {"command": "touch /tmp/pwned", "id": "csrf-3", "csrf_token": "guessed"}):
        for headers in ({}, cross_site):
            status, _headers, html = form_post(site.dashboard, "/actions/enqueue", fields, headers)
            assert status == 403, (fields, headers)
            assert message in html
    for path, fields in (("/actions/retry", {"all": "1"}), ("/actions/cancel", {"id": "waits"})):
        assert form_post(site.dashboard, path, fields, cross_site)[0] == 403, path
    for path, payload in (("/api/jobs", {"command": "true", "id": "csrf-api"}), ("/api/retry", {"all": True}),
                          ("/api/cancel", {"id": "waits"})):
        status, _headers, body = body_of(site.dashboard, path, method="POST",
                                         data=json.dumps(payload).encode(),
                                         headers={"Content-Type": "application/json", **cross_site})
        assert (status, json.loads(body)) == (403, {"error": message, "status": 403}), path
    assert snapshot(site.db) == before


def test_a_form_posted_as_the_page_gave_it_is_accepted(site: Site) -> None:
    """What a browser does: post the add-job form with its hidden fields as they are."""
    assert site.dashboard is not None
    _status, _headers, page = body_of(site.dashboard, "/")
    hidden = re.findall(r'<input type="hidden" name="csrf_token" value="([^"]*)">', page)
    assert hidden == [csrf_of(site.dashboard)]
    status, headers, _html = form_post(site.dashboard, "/actions/enqueue", {
        "csrf_token": hidden[0], "command": "true", "id": "from-the-form", "delay": "3600"})
    assert (status, headers.get("Location")) == (303, "/job?id=from-the-form")
    assert "from-the-form" in job_ids(site.db)


@pytest.mark.parametrize("host", ["evil.example", "127.0.0.1.nip.io", "localhost.evil.example"])
def test_another_host_name_is_refused_without_the_csrf_token(site: Site, host: str) -> None:
    assert site.dashboard is not None
    csrf = csrf_of(site.dashboard)
    port = site.dashboard.url.rsplit(":", 1)[1].rstrip("/")
    before = snapshot(site.db)
    for path in ("/", "/api/session", "/jobs", "/api/status", "/static/dashboard.js"):
        status, headers, body = body_of(site.dashboard, path, headers={"Host": f"{host}:{port}"})
        assert status == 400, (path, status)
        assert json.loads(body) == {"error": f"this dashboard answers to 127.0.0.1, not '{host}:{port}'",
                                    "status": 400}
        assert csrf not in body
        assert headers["Content-Security-Policy"] == CSP
    status, _headers, body = form_post(site.dashboard, "/actions/enqueue", {
        "csrf_token": csrf, "command": "true", "id": "rebound"}, {"Host": f"{host}:{port}"})
    assert status == 400 and csrf not in body
    assert snapshot(site.db) == before


def test_a_body_over_64_kib_is_refused_and_nothing_is_enqueued(site: Site) -> None:
    assert site.dashboard is not None
    before = snapshot(site.db)
    csrf = csrf_of(site.dashboard)
    huge = "echo " + "x" * (70 * 1024)
    status, _headers, html = form_post(site.dashboard, "/actions/enqueue",
                                       {"csrf_token": csrf, "command": huge, "id": "huge-form"})
    assert status == 413
    assert "Request Entity Too Large" in html and csrf in html  # our own error page, with the menu
    status, _headers, body = body_of(site.dashboard, "/api/jobs", method="POST",
                                     data=json.dumps({"command": huge, "id": "huge-api"}).encode(),
                                     headers={"Content-Type": "application/json", "X-CSRF-Token": csrf})
    assert status == 413
    assert json.loads(body)["status"] == 413
    assert snapshot(site.db) == before


# -- read-only -----------------------------------------------------------------------------------------
def test_read_only_refuses_every_post_and_shows_no_form(site: Site) -> None:
    read_only = site.read_only
    assert read_only is not None
    assert read_only.printed_url.startswith("http://127.0.0.1:")
    assert read_only.output().startswith("Dashboard (read-only): ")
    before = snapshot(site.db)
    csrf = csrf_of(read_only)
    message = "this dashboard is read-only (--read-only): it changes nothing"
    for path, payload in (("/api/jobs", {"command": "true", "id": "ro"}), ("/api/retry", {"all": True}),
                          ("/api/cancel", {"id": "waits"})):
        assert read_only.post_json(path, payload) == (403, {"error": message, "status": 403}), path
    for path, fields in (("/actions/enqueue", {"command": "true", "id": "ro"}),
                         ("/actions/retry", {"all": "1"}), ("/actions/retry", {"id": ID_XSS}),
                         ("/actions/cancel", {"id": "waits"})):
        status, _headers, html = form_post(read_only, path, {**fields, "csrf_token": csrf})
        assert status == 403 and message in html, path
    for path in site.pages:
        status, _headers, html = body_of(read_only, path)
        assert status == 200, path
        assert "<form" not in html.replace('<form method="get"', ""), path
        assert "<button" not in html.replace('<button type="submit">Show</button>', ""), path
        assert 'class="badge">read-only<' in html, path
    assert snapshot(site.db) == before


# -- the token -----------------------------------------------------------------------------------------
def test_without_the_token_every_request_gets_401_without_the_csrf_token(guarded: Guarded) -> None:
    dashboard = guarded.dashboard
    assert dashboard.token == guarded.token  # the printed URL carries it
    csrf = csrf_of(dashboard, headers=guarded.bearer)
    message = ("this dashboard needs its token: open the URL it printed, or send "
               "'Authorization: Bearer TOKEN'")
    wrong = [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {guarded.token}x"},
             {"Authorization": f"Basic {guarded.token}"}, {"Cookie": f"{guarded.cookie}=wrong"},
             {"Cookie": f"parallelr_dashboard_token={guarded.token}"},  # not this port's cookie
             {"Authorization": "Bearer tökén"}]
    for headers in wrong:
        for path in ("/", "/jobs", "/api/session", "/api/status", "/api/events", "/static/dashboard.js",
                     "/?token=wrong"):
            status, response_headers, body = body_of(dashboard, path, headers=headers)
            assert status == 401, (path, headers, status)
            assert json.loads(body) == {"error": message, "status": 401}
            assert csrf not in body and guarded.token not in body
            assert response_headers["Content-Security-Policy"] == CSP
            assert "Set-Cookie" not in response_headers
    existed = guarded.db.exists()  # (created by test_a_store_the_dashboard_creates_is_private only)
    status, _headers, body = form_post(dashboard, "/actions/enqueue", {"csrf_token": csrf, "command": "true",
                                                                       "id": "unauthorised"})
    assert status == 401 and guarded.db.exists() == existed
    assert not existed or "unauthorised" not in job_ids(guarded.db)


def test_the_token_works_as_bearer_cookie_and_once_in_the_url(guarded: Guarded) -> None:
    dashboard = guarded.dashboard
    assert body_of(dashboard, "/jobs/x", headers=guarded.bearer)[0] in (404, 503)  # in: no such job/store
    assert body_of(dashboard, "/", headers=guarded.bearer)[0] == 200
    status, headers, _body = body_of(dashboard, f"/jobs?token={guarded.token}&state=dead")
    assert (status, headers["Location"]) == (303, "/jobs?state=dead")
    cookie = headers["Set-Cookie"]
    parts = [part.strip() for part in cookie.split(";")]
    assert parts[0] == f"{guarded.cookie}={guarded.token}"
    assert "HttpOnly" in parts and "SameSite=Strict" in parts and "Path=/" in parts
    by_cookie = {"Cookie": parts[0]}
    assert body_of(dashboard, "/", headers=by_cookie)[0] == 200
    assert dashboard.get_json("/api/session", headers=by_cookie)["read_only"] is False
    refused, _headers, _body = body_of(dashboard, "/api/jobs", method="POST", data=b'{"command": "true"}',
                                       headers={"Content-Type": "application/json", **by_cookie})
    assert refused == 403  # a cookie comes with every cross-site request: it still needs the CSRF token


def test_a_store_the_dashboard_creates_is_private(guarded: Guarded) -> None:
    dashboard = guarded.dashboard
    assert not guarded.db.exists()
    status, headers, _body = form_post(dashboard, "/actions/enqueue", {"command": "true", "id": "first"},
                                       guarded.bearer)
    assert (status, headers.get("Location")) == (303, "/job?id=first")
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in guarded.db.parent.glob("state.db*")}
    assert modes["state.db"] == 0o600, modes
    assert all(mode == 0o600 for mode in modes.values()), modes
    assert dashboard.get_json("/api/jobs", headers=guarded.bearer)["total"] == 1


# -- where it listens ------------------------------------------------------------------------------------
def test_by_default_it_listens_on_127_0_0_1_only(site: Site) -> None:
    dashboard = site.dashboard
    assert dashboard is not None
    port = int(dashboard.url.rsplit(":", 1)[1].rstrip("/"))
    assert dashboard.printed_url == f"http://127.0.0.1:{port}/"
    try:
        connections = psutil.Process(dashboard.proc.pid).net_connections(kind="inet")
    except psutil.AccessDenied:
        pytest.skip("the server's sockets cannot be listed here")
    listening = [conn for conn in connections if conn.status == psutil.CONN_LISTEN]
    assert [(conn.laddr.ip, conn.laddr.port) for conn in listening] == [("127.0.0.1", port)]
    others = [address.address for addresses in psutil.net_if_addrs().values() for address in addresses
              if address.family == socket.AF_INET and not address.address.startswith("127.")]
    for address in others:
        with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as probe:
            probe.settimeout(2)
            assert probe.connect_ex((address, port)) != 0, f"{address}:{port} answers"
