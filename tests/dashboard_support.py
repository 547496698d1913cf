"""Shared by the dashboard's tests: a real ``parallelr dashboard`` process on 127.0.0.1, and a real
headless Chromium driven by Playwright.

The browser is the system's Chromium (Debian's ``chromium`` package; ``.ci/run`` installs it):
Playwright is pointed at it and never downloads one. Without it the browser tests are skipped,
unless ``PARALLELR_REQUIRE_BROWSER=1`` (CI sets it), which makes a missing browser a failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import pytest

URL_LINE = re.compile(r"^Dashboard(?: \(read-only\))?: (http://\S+)")
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]


class DashboardProcess:
    """One dashboard server: ``url`` (without the token), ``token`` if any, ``stop()``."""

    def __init__(self, proc: subprocess.Popen, url: str, out_path: Path) -> None:
        self.proc = proc
        self.printed_url = url
        match = re.match(r"(http://[^/]+/)(?:\?token=(.+))?$", url)
        assert match, url
        self.url = match.group(1)
        self.token = match.group(2)
        self.out_path = out_path

    def stop(self, signum: int = signal.SIGINT, timeout: float = 10) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        return self.proc.wait(timeout=timeout)

    def output(self) -> str:
        return self.out_path.read_text(encoding="utf-8", errors="replace")

    # -- plain HTTP (urllib: what a script would do) --
    def request(self, path: str, *, method: str = "GET", data: Optional[bytes] = None,
                headers: Optional[Dict[str, str]] = None,
                timeout: float = 10) -> Tuple[int, Dict[str, str], bytes]:
        request = urllib.request.Request(self.url.rstrip("/") + path, data=data, method=method,
                                         headers=headers or {})
        try:
            with _no_redirects().open(request, timeout=timeout) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def get_json(self, path: str, **kwargs: Any) -> Any:
        status, _headers, body = self.request(path, **kwargs)
        assert status == 200, (status, body[:500])
        return json.loads(body)

    def post_json(self, path: str, payload: Any, headers: Optional[Dict[str, str]] = None) -> Tuple[int, Any]:
        """POST JSON with this server's CSRF token (from ``/api/session``)."""
        extra = dict(headers or {})
        if self.token:
            extra.setdefault("Authorization", f"Bearer {self.token}")
        if "Authorization" not in extra:
            extra["X-CSRF-Token"] = self.get_json("/api/session")["csrf_token"]
        status, _headers, body = self.request(path, method="POST", data=json.dumps(payload).encode(),
                                              headers={"Content-Type": "application/json", **extra})
        return status, json.loads(body) if body else None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _no_redirects() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(_NoRedirect)


def start_dashboard(janitor: Any, home: Path, args: Sequence[str] = (), *, db: Optional[Path] = None,
                    env: Optional[Dict[str, str]] = None, timeout: float = 20) -> DashboardProcess:
    """``python -m parallelr dashboard --port 0 [--db DB] ARGS`` until it prints its URL."""
    argv: List[str] = [sys.executable, "-m", "parallelr", "dashboard", "--port", "0", *args]
    if db is not None:
        argv += ["--db", str(db)]
    out_path = Path(tempfile.mkstemp(prefix="dashboard-", suffix=".out", dir=str(home))[1])
    out = open(out_path, "w", encoding="utf-8")
    proc = janitor.popen(argv, home, stdout=out, stderr=subprocess.STDOUT, env=env or {})
    out.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = out_path.read_text(encoding="utf-8", errors="replace")
        for line in text.splitlines():
            match = URL_LINE.match(line)
            if match:
                return DashboardProcess(proc, match.group(1), out_path)
        if proc.poll() is not None:
            pytest.fail(f"the dashboard exited with {proc.returncode}: {text}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"the dashboard printed no URL within {timeout}s: {out_path.read_text()}")


def chromium_path() -> Optional[str]:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def require_browser() -> str:
    """The system Chromium's path; skip (or, with PARALLELR_REQUIRE_BROWSER=1, fail) without it."""
    path = chromium_path()
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        path = None
    if path is None:
        message = "no headless Chromium and Playwright here: apt-get install chromium; pip install playwright"
        if os.environ.get("PARALLELR_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium for the session (a fresh context per test: see ``page``)."""
    executable = require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A page in a fresh browser context; any dialog (alert, confirm) is recorded in
    ``page.dialogs`` and dismissed, and script errors land in ``page.errors``."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    opened.dialogs = []  # type: ignore[attr-defined]
    opened.errors = []  # type: ignore[attr-defined]
    opened.on("dialog", lambda dialog: (opened.dialogs.append(dialog.message), dialog.dismiss()))
    opened.on("pageerror", lambda error: opened.errors.append(str(error)))
    opened.set_default_timeout(10_000)
    try:
        yield opened
    finally:
        context.close()
