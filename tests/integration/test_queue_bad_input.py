"""``queuectl`` given bad input: every mistake is ONE line on stderr (no traceback), exit 1 or 2,
and the store is left exactly as it was; odd but valid input (unicode, spaces, shell syntax, huge
or binary output) works.

The single-command cases run at the same time, each on its own copy of a store that holds one
job (``keep``), in one module fixture per store kind; each case is still its own test, once on a
SQLite file and once on a PostgreSQL database (a copy is ``CREATE DATABASE ... TEMPLATE``). The
store is compared before and after, table by table, read with the store's own driver. A locked or
corrupt file is SQLite's alone; a server that refuses the connection and a database that does not
exist are PostgreSQL's. Mistakes refused before the store is read or written (by the parser, or
in the JSON argument; see ``BEFORE_THE_STORE``) run once, on SQLite. The odd but valid content
runs on both stores too (PostgreSQL keeps a NUL of an output as U+FFFD: see
parallelr/jobs/postgres.py)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import pytest
from conftest import CliResult, ProcessJanitor, cli_env
from pg_server import PostgresServer, unique_database_name
from store_support import STORE_KINDS, StoreTarget

QUEUECTL = (sys.executable, "-c",
            "import sys; from parallelr.cli import main_queuectl; sys.exit(main_queuectl())")
DB_VARIABLE = "QUEUECTL_DB_PATH"
FINISHED = ("succeeded", "dead", "cancelled")
BUSY_TIMEOUT = 5.0  # seconds: the store's busy timeout


def run_queuectl(args: Sequence[str], home: Path, cwd: Path, db: str, input: Optional[str] = None,
                 timeout: float = 60) -> CliResult:
    completed = subprocess.run(
        [*QUEUECTL, *args], env=cli_env(home, {DB_VARIABLE: db}), input=input, capture_output=True,
        encoding="utf-8", errors="surrogateescape", timeout=timeout, cwd=str(cwd),
        stdin=None if input is not None else subprocess.DEVNULL,
    )
    return CliResult(completed.returncode, completed.stdout, completed.stderr)


def snapshot(store: StoreTarget) -> Any:
    """Everything the store holds (schema version, tables), or the file's digest if it is no
    database; None if there is no file (or no database to connect to)."""
    if store.is_postgres:
        return _postgres_snapshot(store.location)
    db = Path(store.location)
    if not db.exists():
        return None
    try:
        reader = sqlite3.connect(db.as_uri() + "?mode=ro", uri=True, timeout=10)
        with contextlib.closing(reader) as connection:
            names = [name for (name,) in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
            tables = {name: sorted(map(repr, connection.execute(f'SELECT * FROM "{name}"')))
                      for name in names}
            return connection.execute("PRAGMA user_version").fetchone()[0], tables
    except sqlite3.DatabaseError:
        return "bytes", hashlib.sha256(db.read_bytes()).hexdigest()


def _postgres_snapshot(url: str) -> Any:
    """The same for a PostgreSQL database, in one connection; the version is parallelr_schema's."""
    import psycopg

    try:
        connection = psycopg.connect(url, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError:  # a refused connection, a database that does not exist
        return None
    with contextlib.closing(connection):
        names = [name for (name,) in connection.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")]
        tables = {name: sorted(map(repr, connection.execute(f'SELECT * FROM "{name}"'))) for name in names}
        version = connection.execute("SELECT version FROM parallelr_schema").fetchall() if names else None
        return version, tables


def one_error_line(result: CliResult, codes: Sequence[int] = (1, 2)) -> str:
    assert "Traceback" not in result.output, result.output
    assert result.returncode in codes, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert result.stdout == "", result.stdout
    return lines[0]


# -- single commands, run together ------------------------------------------------------------------
class Case(NamedTuple):
    args: Tuple[str, ...]
    expect: Tuple[str, ...]  # each in the error line ("{db}" is the store's path or URL)
    codes: Tuple[int, ...] = (1, 2)
    stdin: Optional[str] = None
    files: Mapping[str, bytes] = {}
    store: str = "template"  # template, newer; SQLite: corrupt, locked; PostgreSQL: refused, missing
    kinds: Tuple[str, ...] = STORE_KINDS  # the stores it runs on


SQLITE = ("sqlite",)
POSTGRESQL = ("postgresql",)


def enqueue(job: Any, *expect: str) -> Case:
    return Case(("enqueue", job if isinstance(job, str) else json.dumps(job)), expect)


def from_file(lines: Sequence[Any], *expect: str) -> Case:
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    return Case(("enqueue", "--file", "jobs.jsonl"), expect, files={"jobs.jsonl": text.encode("utf-8")})


CASES: Dict[str, Case] = {
    # first: it waits out the busy timeout while the others run
    "locked_database": Case(("enqueue", '{"command":"true"}'), ("{db}", "locked"), codes=(1,),
                            store="locked", kinds=SQLITE),
    "invalid_json": enqueue("{command: echo}", "invalid JSON"),
    "truncated_json": enqueue('{"command": "echo', "invalid JSON"),
    "json_array": enqueue('[{"command":"true"}]', "JSON object", "an array"),
    "json_string": enqueue('"echo hi"', "JSON object", "a string"),
    "json_number": enqueue("42", "JSON object", "a number"),
    "json_null": enqueue("null", "JSON object", "null"),
    "missing_command": enqueue({"id": "x"}, '"command"'),
    "empty_command": enqueue({"command": "   "}, '"command" is empty'),
    "unknown_field": enqueue({"comand": "echo hi"}, '"comand"', 'did you mean "command"'),
    "unknown_hyphen_field": enqueue({"command": "true", "max-retry": 2}, 'did you mean "max_retries"'),
    "max_retries_string": enqueue({"command": "true", "max_retries": "3"}, '"max_retries"'),
    "max_retries_negative": enqueue({"command": "true", "max_retries": -1}, '"max_retries"'),
    "max_retries_huge": enqueue({"command": "true", "max_retries": 10 ** 30}, '"max_retries"'),
    "priority_word": enqueue({"command": "true", "priority": "urgent"}, '"priority"'),
    "priority_boolean": enqueue({"command": "true", "priority": True}, '"priority"'),
    "priority_huge": enqueue({"command": "true", "priority": 10 ** 30}, '"priority"'),
    "timeout_negative": enqueue({"command": "true", "timeout": -1}, '"timeout"'),
    "timeout_zero": enqueue({"command": "true", "timeout": 0}, '"timeout"'),
    "delay_string": enqueue({"command": "true", "delay": "x"}, '"delay"'),
    "env_not_object": enqueue({"command": "true", "env": ["A=1"]}, '"env"'),
    "env_value_number": enqueue({"command": "true", "env": {"A": 1}}, '"env"', "A"),
    "env_bad_name": enqueue({"command": "true", "env": {"A-B": "x"}}, "'A-B'"),
    "depends_on_not_list": enqueue({"command": "true", "depends_on": 5}, '"depends_on"'),
    "queue_with_spaces": enqueue({"command": "true", "queue": "my queue"}, '"queue"', "'my queue'"),
    "id_too_long": enqueue({"id": "x" * 201, "command": "true"}, '"id"'),
    "id_not_string": enqueue({"id": 7, "command": "true"}, '"id"'),
    "cwd_missing": enqueue({"command": "true", "cwd": "no-such-dir"}, '"cwd"', "no-such-dir"),
    "duplicate_id": enqueue({"id": "keep", "command": "true"}, "'keep'", "exists already"),
    "duplicate_id_in_file": from_file(
        [{"id": "twice", "command": "true"}, {"id": "twice", "command": "true"}], "'twice'"),
    "unknown_dependency": enqueue({"id": "child", "command": "true", "depends_on": ["ghost"]}, "'ghost'"),
    "dependency_cycle_in_file": from_file(
        [{"id": "a", "command": "true", "depends_on": ["b"]},
         {"id": "b", "command": "true", "depends_on": ["a"]}],
        "cycle", "a -> b -> a"),
    "self_dependency": enqueue({"id": "me", "command": "true", "depends_on": ["me"]}, "'me'", "itself"),
    "run_at_not_a_time": enqueue({"command": "true", "run_at": "tomorrow at noon"}, '"run_at"'),
    "run_at_number": enqueue({"command": "true", "run_at": 1700000000}, '"run_at"'),
    "run_at_and_delay": enqueue({"command": "true", "run_at": "2099-01-01T00:00:00Z", "delay": 5},
                                '"run_at"', '"delay"'),
    "bad_line_in_file": from_file([{"command": "true"}, {"command": "true"}, '{"command": nope}',
                                   {"command": "true"}], "jobs.jsonl", "line 3"),
    "nul_in_command": from_file([{"command": "echo a\u0000b"}], "NUL"),
    "deeply_nested_json": from_file(["[" * 100000], "line 1"),
    "lone_surrogate_command": enqueue('{"command": "echo \\ud800"}', '"command"'),
    "lone_surrogate_id": enqueue('{"id": "\\udc80", "command": "true"}', '"id"'),
    "enqueue_nothing": Case(("enqueue",), ("--file",)),
    "enqueue_json_and_file": Case(("enqueue", '{"command":"true"}', "--file", "jobs.jsonl"), ("--file",),
                                  files={"jobs.jsonl": b'{"command":"true"}\n'}),
    "file_missing": Case(("enqueue", "--file", "missing.jsonl"), ("missing.jsonl",)),
    "file_is_a_directory": Case(("enqueue", "--file", "adir"), ("adir", "directory"), files={"adir/x": b""}),
    "file_not_utf8": Case(("enqueue", "--file", "latin1.jsonl"), ("latin1.jsonl", "UTF-8"),
                          files={"latin1.jsonl": '{"command":"echo caf\u00e9"}\n'.encode("latin-1")}),
    # the same Latin-1 bytes on stdin (the test's input is encoded with surrogateescape)
    "stdin_not_utf8": Case(("enqueue", "--file", "-"), ("stdin", "UTF-8"),
                           stdin='{"command":"echo caf\udce9"}\n'),
    "list_state_bogus": Case(("list", "--state", "bogus"), ("bogus",), codes=(2,)),
    "list_limit_zero": Case(("list", "--limit", "0"), ("--limit",), codes=(2,)),
    "purge_older_than_bogus": Case(("purge", "--state", "completed", "--older-than", "soon"), ("soon",),
                                   codes=(2,)),
    "show_unknown_id": Case(("show", "ghost"), ("'ghost'",)),
    "logs_unknown_id": Case(("logs", "ghost"), ("'ghost'",)),
    "logs_never_ran": Case(("logs", "keep"), ("'keep'",), codes=(1,)),
    "cancel_unknown_id": Case(("cancel", "ghost"), ("'ghost'",)),
    "dlq_retry_unknown_id": Case(("dlq", "retry", "ghost"), ("'ghost'",)),
    "dlq_retry_pending_job": Case(("dlq", "retry", "keep"), ("'keep'", "not dead")),
    "dlq_retry_nothing": Case(("dlq", "retry"), ("--all",)),
    "worker_count_zero": Case(("worker", "start", "--count", "0"), ("--count",), codes=(2,)),
    "config_unknown_key": Case(("config", "set", "max-retrys", "4"),
                               ("'max-retrys'", "did you mean 'max-retries'")),
    "config_get_unknown_key": Case(("config", "get", "backof_base"), ("did you mean 'backoff-base'",)),
    "config_backoff_base_half": Case(("config", "set", "backoff-base", "0.5"), ("backoff-base", "0.5")),
    "config_max_retries_negative": Case(("config", "set", "max-retries", "-1"), ("max-retries", "-1")),
    "config_max_retries_abc": Case(("config", "set", "max_retries", "abc"), ("max-retries", "abc")),
    "config_heartbeat_not_below_lease": Case(("config", "set", "heartbeat-seconds", "30"),
                                             ("heartbeat-seconds", "lease-seconds")),
    "config_lease_not_above_heartbeat": Case(("config", "set", "lease-seconds", "1"),
                                             ("heartbeat-seconds", "lease-seconds")),
    "corrupt_database_list": Case(("list",), ("{db}",), codes=(1,), store="corrupt", kinds=SQLITE),
    "corrupt_database_enqueue": Case(("enqueue", '{"command":"true"}'), ("{db}",), codes=(1,),
                                     store="corrupt", kinds=SQLITE),
    # a server that refuses the connection, a database that does not exist: like a file that
    # cannot be opened, one line naming the store and exit 1 (for the worker too, before it starts)
    "refused_connection_enqueue": Case(("enqueue", '{"command":"true"}'), ("{db}", "Connection refused"),
                                       codes=(1,), store="refused", kinds=POSTGRESQL),
    "refused_connection_status": Case(("status",), ("{db}", "Connection refused"), codes=(1,),
                                      store="refused", kinds=POSTGRESQL),
    "refused_connection_worker": Case(("worker", "start"), ("{db}", "Connection refused"), codes=(1,),
                                      store="refused", kinds=POSTGRESQL),
    "missing_database_list": Case(("list",), ("{db}", "does not exist"), codes=(1,), store="missing",
                                  kinds=POSTGRESQL),
    "newer_database_enqueue": Case(("enqueue", '{"command":"true"}'), ("{db}", "newer"), codes=(1,),
                                   store="newer"),
    "newer_database_status": Case(("status",), ("{db}", "newer"), codes=(1,), store="newer"),
    # fine: nothing to enqueue
    "empty_file": Case(("enqueue", "--file", "empty.jsonl"), (), codes=(0,), files={"empty.jsonl": b""}),
    "blank_lines_only": Case(("enqueue", "--file", "-"), (), codes=(0,), stdin="\n   \n\t\n"),
}


# Refused before the store is read or written, so the store plays no part and they run once: by
# the parser (before any store is opened), or while checking the JSON argument (before the
# enqueue's transaction) or the --file option (before the file is read). The mistakes found in a
# file's lines, as it is read inside the enqueue's transaction, and those found in the stored
# jobs (a duplicate ID, an unknown dependency, an unknown job, the stored settings) run on both.
BEFORE_THE_STORE = {
    "invalid_json", "truncated_json", "json_array", "json_string", "json_number", "json_null",
    "missing_command", "empty_command", "unknown_field", "unknown_hyphen_field", "max_retries_string",
    "max_retries_negative", "max_retries_huge", "priority_word", "priority_boolean", "priority_huge",
    "timeout_negative", "timeout_zero", "delay_string", "env_not_object", "env_value_number", "env_bad_name",
    "depends_on_not_list", "queue_with_spaces", "id_too_long", "id_not_string", "cwd_missing",
    "run_at_not_a_time", "run_at_number", "run_at_and_delay", "lone_surrogate_command", "lone_surrogate_id",
    "enqueue_nothing", "enqueue_json_and_file", "file_missing", "file_is_a_directory",
    "list_state_bogus", "list_limit_zero", "purge_older_than_bogus", "worker_count_zero",
}
assert not BEFORE_THE_STORE - set(CASES), BEFORE_THE_STORE - set(CASES)
CASES = {name: case._replace(kinds=SQLITE) if name in BEFORE_THE_STORE else case
         for name, case in CASES.items()}


class Outcome(NamedTuple):
    result: CliResult
    db: str  # the store's path or URL
    before: Any
    after: Any
    seconds: float


class Databases:
    """The PostgreSQL databases of this module's fixtures, on the session's server: a new one, or
    a copy of another (``CREATE DATABASE ... TEMPLATE``: a file copy, cheaper than a queuectl
    call); all dropped at the end."""

    def __init__(self, server: PostgresServer) -> None:
        self.server = server
        self.names: List[str] = []

    def create(self, hint: str, template: Optional[str] = None) -> str:
        name = unique_database_name(hint)
        self.names.append(name)
        if template is None:
            return self.server.create_database(name)
        import psycopg
        from psycopg import sql

        with contextlib.closing(psycopg.connect(self.server.url(), autocommit=True)) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)))
        return self.server.url(name)

    def missing(self) -> str:
        """The URL of a database that does not exist."""
        return self.server.url(unique_database_name("missing"))

    def drop_all(self) -> None:
        for name in self.names:
            self.server.drop_database(name)


def database_of(url: str) -> str:
    return url.rsplit("/", 1)[1]


def refused_url() -> str:
    """A PostgreSQL URL of 127.0.0.1 on a port where nothing listens."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"postgresql://postgres@127.0.0.1:{port}/queue"


def _make_template(kind: str, root: Path, databases: Optional[Databases]) -> str:
    """A store made by queuectl, holding one pending job ``keep`` (and the heartbeat setting at
    its default, so lease-seconds 1 is refused)."""
    (root / "home").mkdir(parents=True)
    db = databases.create("bad_input_template") if databases else str(root / "store.db")
    for args in (("enqueue", '{"id":"keep","command":"true"}'), ("config", "set", "heartbeat-seconds", "10")):
        result = run_queuectl(args, root / "home", root, db)
        assert result.returncode == 0, result.output
    if not databases:
        assert not Path(f"{db}-wal").exists()
    return db


def _prepare(case: Case, root: Path, template: str, databases: Optional[Databases]) -> StoreTarget:
    (root / "home").mkdir(parents=True)
    for name, data in case.files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    if databases is not None:
        if case.store == "refused":
            return StoreTarget("postgresql", refused_url())
        if case.store == "missing":
            return StoreTarget("postgresql", databases.missing())
        store = StoreTarget("postgresql", databases.create(root.name, template=database_of(template)))
        if case.store == "newer":
            store.sql("UPDATE parallelr_schema SET version = 99")
        return store
    db = root / "store.db"
    if case.store == "corrupt":
        db.write_bytes(os.urandom(16384))
    else:
        shutil.copyfile(template, db)
    if case.store == "newer":
        with contextlib.closing(sqlite3.connect(str(db))) as connection:
            connection.execute("PRAGMA user_version = 99")
            connection.commit()
    return StoreTarget("sqlite", str(db))


def _run_case(case: Case, root: Path, template: str, databases: Optional[Databases]) -> Outcome:
    store = _prepare(case, root, template, databases)
    before = snapshot(store)
    with contextlib.ExitStack() as stack:
        if case.store == "locked":
            holder = stack.enter_context(contextlib.closing(sqlite3.connect(store.location,
                                                                            isolation_level=None)))
            holder.execute("BEGIN EXCLUSIVE")
            stack.callback(holder.execute, "ROLLBACK")
        started = time.monotonic()
        result = run_queuectl(case.args, root / "home", root, store.location, input=case.stdin, timeout=30)
        seconds = time.monotonic() - started
    return Outcome(result, store.location, before, snapshot(store), seconds)


def _run_cases(kind: str, root: Path, databases: Optional[Databases]) -> Dict[str, Outcome]:
    template = _make_template(kind, root / "template", databases)
    cases = {name: case for name, case in CASES.items() if kind in case.kinds}
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {name: pool.submit(_run_case, case, root / name, template, databases)
                   for name, case in cases.items()}
        return {name: future.result() for name, future in futures.items()}


OutcomesOf = Callable[[str, Optional[PostgresServer]], Dict[str, Outcome]]


@pytest.fixture(scope="module")
def outcomes_of(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OutcomesOf]:
    """``outcomes_of(kind, server)``: every case of that store kind, run once per module."""
    done: Dict[str, Dict[str, Outcome]] = {}
    made: List[Databases] = []

    def of(kind: str, server: Optional[PostgresServer]) -> Dict[str, Outcome]:
        if kind not in done:
            databases = None
            if server is not None:
                databases = Databases(server)
                made.append(databases)
            done[kind] = _run_cases(kind, tmp_path_factory.mktemp(f"cases-{kind}"), databases)
        return done[kind]

    try:
        yield of
    finally:
        for databases in made:
            databases.drop_all()


@pytest.fixture
def outcomes(store_kind: str, outcomes_of: OutcomesOf, request: pytest.FixtureRequest) -> Dict[str, Outcome]:
    server = request.getfixturevalue("postgres_server") if store_kind == "postgresql" else None
    return outcomes_of(store_kind, server)


BAD_INPUT = [(kind, name) for kind in STORE_KINDS for name, case in CASES.items()
             if case.codes != (0,) and kind in case.kinds]


@pytest.mark.parametrize(("store_kind", "name"), BAD_INPUT)
def test_bad_input_is_one_line_and_changes_nothing(name: str, outcomes: Dict[str, Outcome]) -> None:
    case, outcome = CASES[name], outcomes[name]
    line = one_error_line(outcome.result, case.codes)
    assert line.startswith("queuectl: error: "), line
    for expected in case.expect:
        assert expected.format(db=outcome.db) in line, line
    assert outcome.after == outcome.before  # the store is as it was


def test_locked_database_waits_for_the_busy_timeout(outcomes_of: OutcomesOf) -> None:
    outcome = outcomes_of("sqlite", None)["locked_database"]
    assert BUSY_TIMEOUT - 0.5 <= outcome.seconds <= BUSY_TIMEOUT + 15, outcome.seconds


@pytest.mark.parametrize("name", ["empty_file", "blank_lines_only"])
def test_a_file_without_jobs_enqueues_nothing(name: str, outcomes: Dict[str, Outcome]) -> None:
    outcome = outcomes[name]
    assert outcome.result.returncode == 0, outcome.result.output
    assert (outcome.result.stdout, outcome.result.stderr) == ("", "Enqueued 0 job(s)\n")
    assert outcome.after == outcome.before


# -- odd but valid content, run by a worker ----------------------------------------------------------
def deadline(predicate: Any, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)


class Ran(NamedTuple):
    store: StoreTarget
    home: Path
    cwd: Path

    @property
    def db(self) -> str:
        return self.store.location

    def __call__(self, *args: str) -> CliResult:
        return run_queuectl(args, self.home, self.cwd, self.db)

    def many(self, *calls: Sequence[str]) -> List[CliResult]:
        with ThreadPoolExecutor(max_workers=4) as pool:
            return list(pool.map(lambda args: self(*args), calls))

    def query(self, sql: str, params: Sequence[Any] = ()) -> List[Any]:
        return self.store.sql(sql, params)


UNICODE_ID = "ünï cödé ☃ with spaces"
UNICODE_TEXT = "grüße ☃  two  spaces"
META_COMMAND = ("echo \"a;b\" | tr ';' '-' && echo $((2+3)) > out.txt; cat out.txt; echo '$HOME' \"x  y\"; "
                "echo `echo back`; printf '%s\\n' \"it's\" >&2; test -n \"$NOPE\" || echo 'or ok'")
META_OUTPUT = "a-b\n5\n$HOME x  y\nback\nor ok\n"
PY = f"'{sys.executable}'"
CONTENT_JOBS = [
    {"id": UNICODE_ID, "command": f"echo '{UNICODE_TEXT}'"},
    {"id": "meta", "command": META_COMMAND},
    {"id": "huge", "command": PY + " -c \"import sys; sys.stdout.write('x' * 5000000 + 'END')\""},
    {"id": "binary", "command": PY + " -c \"import sys; sys.stdout.buffer.write(bytes(range(256)));"
                                     " sys.stderr.buffer.write(bytes(range(255, -1, -1)))\""},
    {"id": "done", "command": "true"},
    {"id": "dead", "command": "exit 4", "max_retries": 1},
    {"id": "held", "command": "true", "queue": "held"},  # the worker takes the default queue only
]


@contextlib.contextmanager
def _content_run(root: Path, store: StoreTarget) -> Iterator[Ran]:
    """CONTENT_JOBS in ``store``, run by one worker."""
    (root / "home").mkdir()
    (root / "wörk dir").mkdir()
    ran = Ran(store, root / "home", root / "wörk dir")
    text = "".join(json.dumps(job, ensure_ascii=False) + "\n" for job in CONTENT_JOBS)
    result = run_queuectl(("enqueue", "--file", "-"), ran.home, ran.cwd, ran.db, input=text)
    assert result.returncode == 0, result.output
    keeper = ProcessJanitor()
    try:
        with (root / "worker.log").open("w", encoding="utf-8") as log:
            worker = keeper.popen([*QUEUECTL, "worker", "start", "--count", "2", "--queue", "default"],
                                  ran.home, env={DB_VARIABLE: ran.db}, cwd=str(ran.cwd),
                                  stdout=log, stderr=subprocess.STDOUT)
        finished = len(CONTENT_JOBS) - 1
        marks = ", ".join("?" * len(FINISHED))
        count = f"SELECT COUNT(*) FROM jobs WHERE queue IS NOT NULL AND state IN ({marks})"
        deadline(lambda: worker.poll() is not None or ran.query(count, FINISHED)[0][0] >= finished,
                 30, "the content jobs")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=15) == 0, (root / "worker.log").read_text(encoding="utf-8")
        yield ran
    finally:
        keeper.cleanup()


RanOn = Callable[[str, Optional[PostgresServer]], Ran]


@pytest.fixture(scope="module")
def ran_on(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RanOn]:
    """``ran_on(kind, server)``: CONTENT_JOBS run by a worker, once per store kind: in a SQLite
    file whose path has unicode and spaces, or in a PostgreSQL database of this module's."""
    done: Dict[str, Ran] = {}
    with contextlib.ExitStack() as stack:
        def on(kind: str, server: Optional[PostgresServer]) -> Ran:
            if kind not in done:
                root = tmp_path_factory.mktemp(f"content-{kind}")
                if server is not None:
                    databases = Databases(server)
                    stack.callback(databases.drop_all)
                    store = StoreTarget(kind, databases.create("content"))
                else:
                    path = root / "störe ☃ dir" / "q u e.db"
                    path.parent.mkdir()
                    store = StoreTarget(kind, str(path))
                done[kind] = stack.enter_context(_content_run(root, store))
            return done[kind]

        yield on


@pytest.fixture
def ran(store_kind: str, ran_on: RanOn, request: pytest.FixtureRequest) -> Ran:
    server = request.getfixturevalue("postgres_server") if store_kind == "postgresql" else None
    return ran_on(store_kind, server)


def test_unicode_and_spaces_in_db_path_ids_and_commands(ran: Ran) -> None:
    listed, shown, logs = ran.many(("list", "--json"), ("show", UNICODE_ID), ("logs", UNICODE_ID))
    jobs = {job["id"]: job for job in json.loads(listed.stdout)}
    assert jobs[UNICODE_ID]["state"] == "completed"
    assert jobs[UNICODE_ID]["command"] == f"echo '{UNICODE_TEXT}'"
    assert shown.returncode == 0 and shown.stdout.splitlines()[0] == f"Job {UNICODE_ID}", shown.output
    assert (logs.returncode, logs.stdout, logs.stderr) == (0, UNICODE_TEXT + "\n", "")


def test_shell_metacharacters_run_literally_through_bin_sh(ran: Ran) -> None:
    logs = ran("logs", "meta")
    assert (logs.returncode, logs.stdout, logs.stderr) == (0, META_OUTPUT, "it's\n"), logs.output
    assert (ran.cwd / "out.txt").read_text() == "5\n"  # the redirection, in the job's directory
    [(argv, shell)] = ran.query("SELECT argv, shell FROM jobs WHERE name = 'meta'")
    assert json.loads(argv) == ["/bin/sh", "-c", META_COMMAND] and shell == 1


def test_huge_output_keeps_a_bounded_tail(ran: Ran) -> None:
    logs, shown = ran.many(("logs", "huge"), ("show", "huge", "--json"))
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout.endswith("xxxEND") and len(logs.stdout) <= 1024 * 1024, len(logs.stdout)
    [attempt] = json.loads(shown.stdout)["attempts_detail"]
    assert attempt["stdout"] == logs.stdout
    [(stored,)] = ran.query("SELECT length(stdout) FROM attempts WHERE job_id = (SELECT id FROM jobs"
                            " WHERE name = 'huge')")
    assert stored == len(logs.stdout)  # the tail alone is stored, not the 5 MB
    if not ran.store.is_postgres:
        size = sum(path.stat().st_size for path in Path(ran.db).parent.iterdir())
        assert size < 4_000_000, size  # nor in the WAL


def test_binary_output_does_not_break_show_or_logs(ran: Ran) -> None:
    listed, shown, as_json, logs = ran.many(("list",), ("show", "binary"), ("show", "binary", "--json"),
                                            ("logs", "binary"))
    for result in (listed, shown, as_json, logs):
        assert result.returncode == 0 and "Traceback" not in result.output, result.output
    assert "  State:      completed" in shown.stdout.splitlines()
    # the output is decoded as UTF-8 (an undecodable byte becomes U+FFFD) and SQLite keeps it as it
    # is; PostgreSQL's text cannot hold the NUL, which its store keeps as U+FFFD
    stdout = bytes(range(256)).decode("utf-8", "replace")
    stderr = bytes(range(255, -1, -1)).decode("utf-8", "replace")
    if ran.store.is_postgres:
        stdout, stderr = stdout.replace("\x00", "\ufffd"), stderr.replace("\x00", "\ufffd")
    assert stdout.startswith(("\x00\x01\x02", "\ufffd\x01\x02"))
    [attempt] = json.loads(as_json.stdout)["attempts_detail"]
    assert (attempt["stdout"], attempt["stderr"]) == (stdout, stderr)
    # logs writes them as they are (read here in text mode, where a \r is a newline)
    assert (logs.stdout, logs.stderr) == (stdout.replace("\r", "\n"), stderr.replace("\r", "\n"))
    printable = bytes(range(32, 127)).decode("ascii")
    assert printable in logs.stdout and printable[::-1] in logs.stderr


def test_dlq_retry_of_a_job_that_is_not_dead_changes_nothing(ran: Ran) -> None:
    states = dict(ran.query("SELECT name, state FROM jobs WHERE name IN ('done', 'dead', 'held')"))
    assert states == {"done": "succeeded", "dead": "dead", "held": "pending"}
    before = snapshot(ran.store)
    completed, pending, mixed, unknown = ran.many(
        ("dlq", "retry", "done"), ("dlq", "retry", "held"), ("dlq", "retry", "dead", "done"),
        ("dlq", "retry", "dead", "ghost"),
    )
    assert "'done'" in one_error_line(completed) and "completed" in one_error_line(completed)
    assert "'held'" in one_error_line(pending) and "pending" in one_error_line(pending)
    assert "'done'" in one_error_line(mixed)
    assert "'ghost'" in one_error_line(unknown)
    assert snapshot(ran.store) == before  # all or nothing: "dead" is still dead
