"""Shared fixtures: a private HOME for every test that runs the CLI, and a helper to run it."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import attrs
import psutil
import pytest

# Fixtures of the support modules, for every test: one headless Chromium and a PostgreSQL server
# per session (started on first use; a test module importing the browser fixture itself would
# start a second Playwright beside the first, which Playwright refuses), and the store a queue
# test runs against, once per store kind.
from dashboard_support import browser, page  # noqa: F401
from pg_server import postgres_server, postgres_url  # noqa: F401
from store_support import store_kind, store_target  # noqa: F401

REPO = Path(__file__).resolve().parent.parent


# A console-log line on stdout, in the default logging.console_format.
CONSOLE_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} - ([A-Z]+) - (.*)")


@attrs.frozen
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    @property
    def console(self) -> List[tuple]:
        """``(LEVEL, message)`` of every console-log line on stdout, in order."""
        matches = (CONSOLE_LINE.fullmatch(line) for line in self.stdout.splitlines())
        return [(match.group(1), match.group(2)) for match in matches if match]

    @property
    def warnings(self) -> List[str]:
        """The messages of the console's WARNING lines."""
        return [message for level, message in self.console if level == "WARNING"]

    @property
    def plain_lines(self) -> List[str]:
        """stdout's lines that are not console-log lines (dry-run commands, the summary, ...)."""
        return [line for line in self.stdout.splitlines() if not CONSOLE_LINE.fullmatch(line)]


def cli_env(home: Path, extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    env = dict(os.environ)
    env["HOME"] = str(home)
    env.pop("PYTHONPATH", None)
    env["PYTHONUNBUFFERED"] = "1"
    if extra:
        env.update(extra)
    return env


@pytest.fixture
def tasks(tmp_path: Path) -> Path:
    """A task directory with one task, ``a.sh`` (``echo a``); test files with other tasks define
    their own ``tasks``."""
    directory = tmp_path / "tasks"
    directory.mkdir()
    (directory / "a.sh").write_text("echo a\n", encoding="utf-8")
    return directory


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A temporary HOME: every file parallelr writes lands under it."""
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def run_cli(home: Path, tmp_path: Path):
    """Run ``python -m parallelr ARGS`` (or ptasker with prog='ptasker') as a real subprocess."""

    def run(
        args: Sequence[str],
        *,
        prog: str = "parallelr",
        env: Optional[Dict[str, str]] = None,
        input: Optional[str] = None,
        timeout: float = 120,
        cwd: Optional[Path] = None,
    ) -> CliResult:
        if prog == "parallelr":
            argv: List[str] = [sys.executable, "-m", "parallelr", *args]
        else:
            argv = [sys.executable, "-c", "import sys; from parallelr.cli import main; "
                    f"sys.exit(main(prog={prog!r}))", *args]
        completed = subprocess.run(
            argv, env=cli_env(home, env), input=input, capture_output=True, text=True, timeout=timeout,
            cwd=str(cwd or tmp_path), stdin=None if input is not None else subprocess.DEVNULL,
        )
        return CliResult(completed.returncode, completed.stdout, completed.stderr)

    return run


# -- process-management fixtures (daemon, -k, signals) --------------------------------------------
MARKER_VARIABLE = "PARALLELR_TEST_MARKER"


def _has_marker(proc: psutil.Process, marker: str) -> bool:
    try:
        if proc.uids().real != os.getuid() or proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return proc.environ().get(MARKER_VARIABLE) == marker
    except psutil.Error:
        return False


class ProcessJanitor:
    """Finds and, at teardown, kills every process a test started, and nothing else.

    Each test gets a unique marker in the environment of the CLI processes it starts (``env``);
    daemons, pool workers and tasks inherit it, so ``survivors()`` lists exactly this test's
    processes, even those that were orphaned or detached. Signals go through psutil, which
    checks the process identity (start time) first, so a reused PID is never touched.
    """

    def __init__(self) -> None:
        self.marker = f"{os.getpid()}-{uuid.uuid4().hex}"
        self.env: Dict[str, str] = {MARKER_VARIABLE: self.marker}
        self._popens: List[subprocess.Popen] = []

    def popen(self, argv: Sequence[str], home: Path, **kwargs: Any) -> subprocess.Popen:
        """Start ``argv`` with HOME=home and the marker; it is cleaned up at teardown."""
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        env = cli_env(home, {**self.env, **kwargs.pop("env", {})})
        proc = subprocess.Popen(list(argv), env=env, **kwargs)
        self._popens.append(proc)
        return proc

    def survivors(self) -> List[psutil.Process]:
        """This test's processes that are still alive (zombies excluded)."""
        me = os.getpid()
        return [proc for proc in psutil.process_iter() if proc.pid != me and _has_marker(proc, self.marker)]

    def cleanup(self) -> None:
        for _ in range(3):  # a dying runner may still spawn; sweep until nothing is left
            found = self.survivors()
            if not found:
                break
            for proc in found:
                with contextlib.suppress(psutil.Error):
                    proc.kill()
            psutil.wait_procs(found, timeout=3)
        for popen in self._popens:
            if popen.poll() is None:
                popen.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                popen.communicate(timeout=5)


@pytest.fixture
def janitor() -> Iterator[ProcessJanitor]:
    """Processes started through it (or with ``janitor.env``) never outlive the test."""
    keeper = ProcessJanitor()
    try:
        yield keeper
    finally:
        keeper.cleanup()


def _wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Return the first truthy value of ``predicate()``; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


@pytest.fixture
def wait_until() -> Callable[..., Any]:
    """``wait_until(predicate, timeout, what)``: a deadline, not a fixed sleep."""
    return _wait_until


# --- helpers for the CLI integration and security tests ----------------------------------------

_RECORDER = '''#!{python} -S
"""A fake program: records how it was called (argv, environment, cwd, parent) and echoes its argv."""
import json, os, sys
record = {{
    "name": os.path.basename(sys.argv[0]), "argv": sys.argv[1:], "env": dict(os.environ),
    "cwd": os.getcwd(), "pid": os.getpid(), "ppid": os.getppid(),
}}
path = os.path.join({calls!r}, "%s.%d.json" % (record["name"], os.getpid()))
with open(path + ".tmp", "w", encoding="utf-8", errors="surrogateescape") as handle:
    json.dump(record, handle)
os.rename(path + ".tmp", path)
print(" ".join(sys.argv[1:]))
'''


class FakePrograms:
    """A bin directory of fake programs put first on PATH; each call is recorded as a JSON file."""

    def __init__(self, root: Path) -> None:
        self.bin = root / "fakebin"
        self.calls_dir = root / "fakecalls"
        self.bin.mkdir()
        self.calls_dir.mkdir()

    def add(self, *names: str) -> None:
        for name in names:
            path = self.bin / name
            path.write_text(_RECORDER.format(python=sys.executable, calls=str(self.calls_dir)))
            path.chmod(0o755)

    @property
    def env(self) -> Dict[str, str]:
        """Extra environment for run_cli: the fake programs come first on PATH."""
        return {"PATH": f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}"}

    def calls(self, name: Optional[str] = None) -> List[Dict[str, Any]]:
        """The recorded calls (of ``name`` only, if given), in a stable order (by argv, then env)."""
        records = []
        for path in self.calls_dir.glob("*.json"):
            record = json.loads(path.read_text(encoding="utf-8"))
            if name is None or record["name"] == name:
                records.append(record)
        return sorted(records, key=lambda r: (r["name"], r["argv"], sorted(r["env"].items())))


@pytest.fixture
def home_env(home: Path) -> Dict[str, str]:
    """The environment run_cli uses (HOME = the temp home), for tests that start the CLI themselves."""
    return cli_env(home)


@pytest.fixture
def fake_programs(tmp_path: Path) -> FakePrograms:
    """Fake programs (``fake_programs.add("ssh")``) that record argv and environment of each call."""
    return FakePrograms(tmp_path)


@attrs.frozen
class RunFiles:
    """The files one real run wrote under ``~/<app>/logs`` and what they hold."""

    pid: int
    timestamp: str
    main_log: Path
    summary_csv: Path
    output_log: Optional[Path]
    header: str
    rows: List[Dict[str, str]]


def find_run_files(home: Path, app: str = "parallelr") -> RunFiles:
    """The files of the single run under ``home/<app>/logs`` (asserts there is exactly one run)."""
    log_dir = home / app / "logs"
    name = re.compile(rf"{app}_(\d+)_(\d\d[A-Z][a-z][a-z]\d\d_\d{{6}})\.log")
    logs = [path for path in log_dir.iterdir() if name.fullmatch(path.name)]
    assert len(logs) == 1, sorted(p.name for p in log_dir.iterdir())
    match = name.fullmatch(logs[0].name)
    assert match is not None
    stem = f"{app}_{match.group(1)}_{match.group(2)}"
    summary = log_dir / f"{stem}_summary.csv"
    output = log_dir / f"{stem}_output.txt"
    text = summary.read_text(encoding="utf-8")
    header, _, _ = text.partition("\n")
    rows = list(csv.DictReader(io.StringIO(text), delimiter=";"))
    return RunFiles(
        pid=int(match.group(1)),
        timestamp=match.group(2),
        main_log=logs[0],
        summary_csv=summary,
        output_log=output if output.exists() else None,
        header=header,
        rows=rows,
    )


@pytest.fixture
def run_files(home: Path):
    """``run_files(app="parallelr")`` → :class:`RunFiles` of the one run written under the ``home``
    fixture; pass ``home=PATH`` when the test ran the CLI with another HOME."""

    def find(app: str = "parallelr", home: Path = home) -> RunFiles:
        return find_run_files(home, app)

    return find


@pytest.fixture
def user_config(home: Path):
    """``user_config(yaml_text, app="parallelr")`` writes ``~/<app>/cfg/<app>.yaml`` and returns its path."""

    def write(text: str, app: str = "parallelr") -> Path:
        path = home / app / "cfg" / f"{app}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    return write


def summary_value(output: str, label: str) -> str:
    """The value after ``label`` (e.g. ``"- Main Log:"``) in the summary block; asserts it is there once."""
    values = [line[len(label):].strip() for line in output.splitlines() if line.startswith(label)]
    assert len(values) == 1, (label, output)
    return values[0]


@pytest.fixture
def summary():
    """``summary(output, "Total Tasks:")`` → the value of that summary line."""
    return summary_value
