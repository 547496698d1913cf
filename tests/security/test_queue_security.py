"""The job queue's security properties: a private store, user data that cannot drive the terminal,
wake-ups (datagrams, PostgreSQL's notifications) that carry no authority, job IDs and batch
arguments that stay data, and a PostgreSQL password that is never printed.

What the queue does runs against both stores (:mod:`store_support`); the modes of a SQLite file
and its ``-wal``/``-shm`` files are SQLite's alone, the password in a URL PostgreSQL's."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple
from urllib.parse import urlsplit, urlunsplit

import pytest
from conftest import CliResult, ProcessJanitor, cli_env
from pg_server import PostgresServer, unique_database_name
from store_support import StoreTarget

from parallelr.jobs.postgres import CHANNEL

QUEUECTL = (sys.executable, "-c",
            "import sys; from parallelr.cli import main_queuectl; sys.exit(main_queuectl())")
DB_VARIABLE = "QUEUECTL_DB_PATH"
FINISHED = ("succeeded", "dead", "cancelled")
# What must never reach a terminal raw: ESC, CR, BEL (ends an OSC) and the 8-bit CSI (C1).
RAW_CONTROLS = ("\x1b", "\r", "\x07", "\x9b")


class Queue:
    """``queuectl`` against one store (``$QUEUECTL_DB_PATH``), with HOME at the test's home."""

    def __init__(self, home: Path, cwd: Path, store: StoreTarget) -> None:
        self.home = home
        self.cwd = cwd
        self.store = store
        self.db = store.location  # what $QUEUECTL_DB_PATH takes: a path or a URL

    def __call__(self, *args: str, input: Optional[str] = None, umask: int = -1) -> CliResult:
        completed = subprocess.run(
            [*QUEUECTL, *args], env=cli_env(self.home, {DB_VARIABLE: self.db}), input=input,
            capture_output=True, encoding="utf-8", errors="surrogateescape", timeout=60, cwd=str(self.cwd),
            umask=umask, stdin=None if input is not None else subprocess.DEVNULL,
        )
        return CliResult(completed.returncode, completed.stdout, completed.stderr)

    def many(self, *calls: Sequence[str]) -> List[CliResult]:
        with ThreadPoolExecutor(max_workers=4) as pool:
            return list(pool.map(lambda args: self(*args), calls))

    def ok(self, *args: str, **kwargs: Any) -> CliResult:
        result = self(*args, **kwargs)
        assert result.returncode == 0, (args, result.output)
        return result

    def query(self, sql: str, params: Sequence[Any] = ()) -> List[Any]:
        return self.store.sql(sql, params)

    def workers(self) -> List[Any]:
        """The store's worker rows, or none while the store is not there yet."""
        if not self.store.is_postgres and not Path(self.db).exists():
            return []
        try:
            return self.query("SELECT id, wake, stop_requested FROM workers")
        except store_errors():  # the worker is still creating it
            return []

    def finished(self) -> int:
        marks = ", ".join("?" * len(FINISHED))
        return self.query(f"SELECT COUNT(*) FROM jobs WHERE queue IS NOT NULL AND state IN ({marks})",
                          FINISHED)[0][0]

    def start_worker(self, janitor: Any, *args: str, umask: int = -1) -> subprocess.Popen:
        with (self.cwd / "worker.log").open("w", encoding="utf-8") as log:
            return janitor.popen([*QUEUECTL, "worker", "start", *args], self.home,
                                 env={DB_VARIABLE: self.db}, cwd=str(self.cwd), stdout=log,
                                 stderr=subprocess.STDOUT, umask=umask)

    def log(self) -> str:
        return (self.cwd / "worker.log").read_text(encoding="utf-8", errors="replace")

    def run_worker(self, janitor: Any, finished: int, *args: str) -> None:
        """Run a worker until ``finished`` jobs are finished, then SIGTERM it (it must exit 0)."""
        worker = self.start_worker(janitor, *args)
        deadline(lambda: worker.poll() is not None or self.finished() >= finished, 30,
                 f"{finished} finished job(s)")
        assert worker.poll() is None, self.log()
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=15) == 0, self.log()


def store_errors() -> Tuple[type, ...]:
    """What reading a store that is still being created raises (sqlite3's or psycopg's errors)."""
    import psycopg

    return (sqlite3.Error, psycopg.Error)


def deadline(predicate: Any, timeout: float, what: str) -> Any:
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def queue(home: Path, tmp_path: Path, store_target: StoreTarget) -> Queue:
    """queuectl on this test's store: once on a SQLite file, once on a PostgreSQL database."""
    work = tmp_path / "work"
    work.mkdir()
    return Queue(home, work, store_target)


@pytest.fixture
def file_queue(home: Path, tmp_path: Path) -> Queue:
    """queuectl on a SQLite file, for what only a file has (its mode)."""
    work = tmp_path / "work"
    work.mkdir()
    return Queue(home, work, StoreTarget("sqlite", str(tmp_path / "queue.db")))


def jsonl(*jobs: Dict[str, Any]) -> str:
    return "".join(json.dumps(job) + "\n" for job in jobs)


def pwned(root: Path) -> List[str]:
    return sorted(str(path) for path in root.rglob("*pwned*"))


# -- the store is private ------------------------------------------------------------------------------
def test_store_and_its_wal_and_shm_are_mode_0600(file_queue: Queue, janitor) -> None:
    queue = file_queue
    worker = queue.start_worker(janitor, umask=0)  # even a umask of 0 must not open the store up
    paths = [Path(queue.db), Path(f"{queue.db}-wal"), Path(f"{queue.db}-shm")]
    deadline(lambda: all(path.exists() for path in paths) or worker.poll() is not None, 20,
             "the store's files")
    assert worker.poll() is None, queue.log()
    modes = {path.name: oct(stat.S_IMODE(path.stat().st_mode)) for path in paths}
    assert modes == {path.name: "0o600" for path in paths}

    other = Queue(queue.home, queue.cwd, StoreTarget("sqlite", str(queue.cwd / "enqueued.db")))
    other.ok("enqueue", '{"command":"true"}', umask=0)
    assert oct(stat.S_IMODE(Path(other.db).stat().st_mode)) == "0o600"
    deadline(lambda: queue.workers() or worker.poll() is not None, 20, "the worker's row")
    assert queue.ok("worker", "stop").stdout.startswith("Asked 1 worker(s) to stop")
    assert worker.wait(timeout=15) == 0, queue.log()


# -- user data cannot drive the terminal ---------------------------------------------------------------
ESCAPE_JOBS = [
    {"id": "cmd-esc", "command": "printf '\\033[31mRED\\r\\n'; echo '\x1b[32m\rFORGED'"},
    {"id": "dead-esc", "command": "echo '\x1b[2J'; echo '\x1b]0;title\x07' >&2; exit 3", "max_retries": 1},
    {"id": "c1-\x9b31m-id", "command": "echo c1"},
    {"id": "env-esc", "command": "true", "env": {"X": "\x1b[31m\rred"}},
]
ESCAPE_IDS = ["id\x1b[31mred", "id\rforged", "id\x1b]0;title\x07"]
SHOWN = {
    "list": ("list",),
    "list_dead": ("list", "--state", "dead"),
    "dlq_list": ("dlq", "list"),
    "status": ("status",),
    "show_cmd_esc": ("show", "cmd-esc"),
    "show_dead_esc": ("show", "dead-esc"),
    "show_c1_id": ("show", "c1-\x9b31m-id"),
    "show_env_esc": ("show", "env-esc"),
}


def _escapes(root: Path, store: StoreTarget) -> Dict[str, CliResult]:
    """ESCAPE_JOBS run by a worker; the output of every SHOWN command, and the enqueues of
    ESCAPE_IDS (as ``enqueue:<index>``)."""
    (root / "home").mkdir()
    queue = Queue(root / "home", root, store)
    enqueued = queue("enqueue", "--file", "-", input=jsonl(*ESCAPE_JOBS))
    assert enqueued.returncode == 0, enqueued.output
    ids = queue.many(*(("enqueue", json.dumps({"id": key, "command": "true"})) for key in ESCAPE_IDS))
    accepted = sum(result.returncode == 0 for result in ids)
    keeper = ProcessJanitor()
    try:
        queue.run_worker(keeper, len(ESCAPE_JOBS) + accepted, "--count", "2")
    finally:
        keeper.cleanup()
    shown = dict(zip(SHOWN, queue.many(*SHOWN.values())))
    shown.update((f"enqueue:{index}", result) for index, result in enumerate(ids))
    return shown


EscapesOn = Callable[[str, Optional[PostgresServer]], Dict[str, CliResult]]


@pytest.fixture(scope="module")
def escapes_on(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EscapesOn]:
    """``escapes_on(kind, server)``: :func:`_escapes`, once per store kind (a PostgreSQL database of
    this module's, dropped at the end)."""
    done: Dict[str, Dict[str, CliResult]] = {}
    with contextlib.ExitStack() as stack:
        def on(kind: str, server: Optional[PostgresServer]) -> Dict[str, CliResult]:
            if kind not in done:
                root = tmp_path_factory.mktemp(f"escapes-{kind}")
                location = str(root / "queue.db")
                if server is not None:
                    name = unique_database_name("escapes")
                    location = server.create_database(name)
                    stack.callback(server.drop_database, name)
                done[kind] = _escapes(root, StoreTarget(kind, location))
            return done[kind]

        yield on


@pytest.fixture
def escapes(store_kind: str, escapes_on: EscapesOn, request: pytest.FixtureRequest) -> Dict[str, CliResult]:
    server = request.getfixturevalue("postgres_server") if store_kind == "postgresql" else None
    return escapes_on(store_kind, server)


@pytest.mark.parametrize("name", list(SHOWN))
def test_user_data_is_escaped_in_output(name: str, escapes: Dict[str, CliResult]) -> None:
    result = escapes[name]
    assert result.returncode == 0, result.output
    raw = [char for char in RAW_CONTROLS if char in result.output]
    assert not raw, (raw, result.output)


def test_escaped_data_is_still_shown(escapes: Dict[str, CliResult]) -> None:
    assert "\\x1b[32m" in escapes["show_cmd_esc"].stdout  # visible, not dropped
    assert "  Env:        X=\\x1b[31m\\rred" in escapes["show_env_esc"].stdout.splitlines()
    assert "c1-\\x9b31m-id" in escapes["show_c1_id"].stdout
    assert "dead-esc" in escapes["dlq_list"].stdout and "cmd-esc" in escapes["list"].stdout


@pytest.mark.parametrize("index", range(len(ESCAPE_IDS)))
def test_id_with_controls_is_refused_or_escaped(index: int, escapes: Dict[str, CliResult]) -> None:
    result = escapes[f"enqueue:{index}"]
    assert "Traceback" not in result.output, result.output
    assert not [char for char in RAW_CONTROLS if char in result.output], result.output
    if result.returncode:
        assert len(result.stderr.splitlines()) == 1 and "\"id\"" in result.stderr, result.output


# -- wake-up datagrams carry no authority ------------------------------------------------------------
def test_forged_wake_datagrams_do_not_stop_a_worker(queue: Queue, janitor) -> None:
    worker = queue.start_worker(janitor)
    rows = deadline(lambda: queue.workers() or worker.poll() is not None, 20, "the worker's row")
    assert worker.poll() is None, queue.log()
    [(owner, wake, _stop)] = rows
    assert wake, rows
    address = "\0" + wake[1:] if wake.startswith("@") else wake
    forged = [b"s", b"stop", b"S", b"q", b"", b"\x00", b"w", b"x" * 60000, os.urandom(512),
              *(bytes([value]) for value in range(256))]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
        sender.setblocking(False)
        for message in forged:
            with contextlib.suppress(BlockingIOError):  # its queue is full: it is awake anyway
                sender.sendto(message, address)
    if queue.store.is_postgres:  # anyone who can connect can NOTIFY its channel: a hint too, whatever it says
        payloads = ["stop", "s", "S", "q", "", "w", "x" * 7999, "\x01\x1b[2J", os.urandom(256).hex()]
        queue.query("SELECT " + ", ".join("pg_notify(?, ?)" for _ in payloads),
                    [value for payload in payloads for value in (CHANNEL, payload)])
    time.sleep(1.0)
    assert worker.poll() is None, queue.log()
    assert queue.workers() == [(owner, wake, 0)]

    queue.ok("enqueue", '{"id":"after-forgery","command":"echo still working"}')
    deadline(lambda: queue.finished() == 1 or worker.poll() is not None, 20, "the job after the datagrams")
    assert queue.ok("logs", "after-forgery").stdout == "still working\n"
    assert worker.poll() is None, queue.log()
    # the store's stop flag does stop it
    assert queue.ok("worker", "stop").stdout.startswith("Asked 1 worker(s) to stop")
    assert worker.wait(timeout=15) == 0, queue.log()
    assert queue.workers() == []


# -- IDs and arguments are data ------------------------------------------------------------------------
METACHARACTER_IDS = ["$(touch pwned-subst)", "; touch pwned-semi", "`touch pwned-tick`",
                     "x && touch pwned-and", "| touch pwned-pipe", "' ; touch pwned-quote '",
                     "\"; touch pwned-dquote; \"", "-rf pwned-dash"]


def test_job_ids_with_shell_metacharacters_are_data(queue: Queue, janitor, tmp_path: Path) -> None:
    jobs = [{"id": key, "command": "printf '%s\\n' \"$PARALLELR_JOB_ID\""} for key in METACHARACTER_IDS]
    result = queue.ok("enqueue", "--file", "-", input=jsonl(*jobs))
    assert result.stdout.splitlines() == METACHARACTER_IDS
    queue.run_worker(janitor, len(jobs), "--count", "2")
    shown = queue.many(*(("show", key) for key in METACHARACTER_IDS))
    logs = queue.many(*(("logs", key) for key in METACHARACTER_IDS))
    for key, show, log in zip(METACHARACTER_IDS, shown, logs):
        assert show.returncode == 0 and show.stdout.splitlines()[0] == f"Job {key}", show.output
        assert "  State:      completed" in show.stdout.splitlines(), show.output
        assert (log.returncode, log.stdout) == (0, key + "\n"), log.output  # the ID, verbatim
    listed = {job["id"] for job in json.loads(queue.ok("list", "--json").stdout)}
    assert listed == set(METACHARACTER_IDS)
    assert pwned(tmp_path) == []


def test_enqueue_keeps_the_batch_runners_argv_without_a_shell(queue: Queue, run_cli, janitor,
                                                              tmp_path: Path, home: Path) -> None:
    values = ["; touch pwned-1", "$(touch pwned-2)", "`touch pwned-3`", "a | touch pwned-4",
              "b && touch pwned-5"]
    arguments = tmp_path / "args.txt"
    arguments.write_text("".join(value + "\n" for value in values), encoding="utf-8")
    result = run_cli(["-A", str(arguments), "-C", "echo @ARG@", "--enqueue"],
                     env={DB_VARIABLE: str(queue.db)}, cwd=queue.cwd)
    assert result.returncode == 0, result.output
    stored = queue.query("SELECT name, argv, shell FROM jobs WHERE queue IS NOT NULL ORDER BY id")
    assert [(json.loads(argv), shell) for _name, argv, shell in stored] == [
        (["echo", value], 0) for value in values]
    queue.run_worker(janitor, len(values), "--count", "2")
    logs = queue.many(*(("logs", name) for name, _argv, _shell in stored))
    assert [(log.returncode, log.stdout) for log in logs] == [(0, value + "\n") for value in values]
    assert pwned(tmp_path) == [] and pwned(home) == []


# -- a PostgreSQL password is never printed --------------------------------------------------------------
PASSWORD = "s3cr3t-Pa55"


def with_password(url: str, port: Optional[int] = None) -> str:
    """``url`` with a password (the test server trusts 127.0.0.1: any password is accepted)."""
    parts = urlsplit(url)
    netloc = f"{parts.username}:{PASSWORD}@{parts.hostname}:{port or parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def secret_queue(home: Path, tmp_path: Path, postgres_url: str) -> Queue:
    """queuectl on a PostgreSQL URL that holds a password."""
    work = tmp_path / "work"
    work.mkdir()
    return Queue(home, work, StoreTarget("postgresql", with_password(postgres_url)))


def test_a_password_in_the_url_is_not_printed_by_commands_or_errors(secret_queue: Queue) -> None:
    queue = secret_queue
    assert queue.ok("enqueue", '{"id":"secret-job","command":"echo hi"}').stdout == "secret-job\n"
    results = queue.many(("status",), ("list",), ("show", "secret-job"), ("worker", "list"),
                         ("config", "list"), ("dlq", "list"), ("logs", "secret-job"), ("show", "ghost"))
    assert [result.returncode for result in results] == [0, 0, 0, 0, 0, 0, 1, 2], [r.output for r in results]
    assert [result.output for result in results if PASSWORD in result.output] == []
    # a server that refuses the connection: the error names the store with the password as ***
    refused = with_password(queue.db, port=free_port())
    shown = refused.replace(PASSWORD, "***")
    assert shown != refused and ":***@127.0.0.1:" in shown
    for args in (("status",), ("enqueue", '{"command":"true"}'), ("worker", "start")):
        result = Queue(queue.home, queue.cwd, StoreTarget("postgresql", refused))(*args)
        assert (result.returncode, result.stdout) == (1, ""), result.output
        assert "Traceback" not in result.output and PASSWORD not in result.output, result.output
        assert result.stderr.startswith(f"queuectl: error: cannot use the job store {shown}: "), result.stderr
        assert len(result.stderr.splitlines()) == 1, result.stderr


def test_a_password_in_the_url_is_not_printed_when_a_daemon_worker_starts(secret_queue: Queue,
                                                                          janitor) -> None:
    queue = secret_queue
    started = subprocess.run(
        [*QUEUECTL, "worker", "start", "--daemon"],
        env=cli_env(queue.home, {**janitor.env, DB_VARIABLE: queue.db}), capture_output=True,
        encoding="utf-8", errors="replace", timeout=60, cwd=str(queue.cwd),
        stdin=subprocess.DEVNULL,
    )
    try:
        assert started.returncode == 0, started.output
        assert started.stdout.startswith("Starting queue worker as daemon...\nStarted queue worker with PID ")
        shown = queue.db.replace(PASSWORD, "***")
        assert PASSWORD not in started.stdout + started.stderr, started.stdout
        assert f"(1 slot(s), store {shown})\n" in started.stdout, started.stdout
    finally:
        deadline(lambda: queue.workers(), 20, "the daemon's row")
        assert queue.ok("worker", "stop").stdout.startswith("Asked 1 worker(s) to stop")
        deadline(lambda: queue.workers() == [], 20, "the daemon to stop")
    logs = list((queue.home / "parallelr" / "logs").glob("queue-worker_*.log"))
    assert len(logs) == 1 and PASSWORD not in logs[0].read_text(encoding="utf-8", errors="replace")


def test_a_password_in_the_url_is_not_printed_by_the_batch_runners_enqueue(secret_queue: Queue, run_cli,
                                                                           tmp_path: Path) -> None:
    queue = secret_queue
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "a.sh").write_text("echo a\n", encoding="utf-8")
    result = run_cli(["-T", str(tasks), "-C", "bash @TASK@", "--enqueue", "--db", queue.db], cwd=queue.cwd)
    assert result.returncode == 0, result.output
    assert queue.query("SELECT count(*) FROM jobs WHERE queue = 'default'") == [(1,)]
    shown = queue.db.replace(PASSWORD, "***")
    assert PASSWORD not in result.output, result.stdout
    assert f"Enqueued 1 task(s) as jobs in queue default (store {shown}); " in result.stdout, result.stdout
