"""SQLiteJobStore: the job store in one SQLite file. Every SQLite-specific statement lives here and
in :mod:`.sqlite_queue` and :mod:`.sqlite_workers` (the queue's, mixins of the store).

The database runs in WAL mode with ``synchronous=NORMAL``: a committed transaction survives a
crash (kill -9) of the process, and readers (``parallelr runs list``) never block a run that
writes. One store wraps one connection in autocommit mode; writes happen inside
:meth:`SQLiteJobStore.transaction` (``BEGIN IMMEDIATE``: the write lock is taken at the start, so
a busy database fails at once with a clear error instead of half-way through, and a claim made
inside it is atomic). A new database file is created private to the user (mode 0600; SQLite
gives its ``-wal`` and ``-shm`` files the same mode).

Tables
======

``runs``: one row per batch run, keyed by the run ID the core prints (``20261123-104148-272c69``):
what is needed to run it again (``command``, ``options`` as JSON), who runs it (``pid`` +
``create_time`` + ``host`` of the runner, and its lease: ``lease_owner``, ``lease_expires_at``),
its ``state`` (:class:`~parallelr.jobs.states.RunState`), log paths, exit code, final counts.

``jobs``: one row per unit of work: a task of a run (``run_id`` + ``position``, unique per run)
or a job of a named ``queue`` (optionally with a unique ``name``). What to run (``source``,
``argv``/``env``/``arguments`` as JSON, ``line_number``, ``shell``), its ``state``
(:class:`~parallelr.jobs.states.JobState`), ``attempts`` / ``max_attempts``,
``next_attempt_at``, the lease (``lease_owner``, ``lease_expires_at``) and the latest attempt's
figures (``pid``, ``worker_id``, ``exit_code``, times, ``duration``, ``memory_mb``,
``cpu_percent``, ``last_error``, ``last_status``). A batch run's jobs are leased to
``pid:<runner pid>`` without an expiry: the run's lease covers them. A queue job's lease expires.

``attempts``: the history, one row per attempt of a job (``job_id``, ``attempt``), with its
status, exit code, times and error. ``settings``: key/value pairs for the queue.

``PRAGMA user_version`` holds the schema version. :func:`migrate` creates the schema in an empty
database and upgrades an older one step by step (version 2 added the run lease, version 3 the
run's planning columns ``planned``, ``plan_digest`` and ``source_stamp``: a big run's jobs are
stored while it runs; version 4 the queue: priorities, per-job timeout and directory, dependencies
in ``job_deps``, the ``workers`` table, output tails in ``attempts``; version 5 indexes for the
queue's readers: counts by state, pages of one state); a database written by a
newer parallelr is refused rather than misread.

Every read and write turns an ``sqlite3`` error into
:class:`~parallelr.jobs.errors.StoreUnavailable` (a corrupt page found by a query is one line for
the user, not a traceback); ``transient`` is set for the errors worth trying again (a lock, a
full disk, an I/O error: ``sqlite3.OperationalError``), not for a corrupt file or a constraint.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import sqlite3
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from parallelr.jobs.batch import AttemptEnd, Record, job_keys, plan_batch
from parallelr.jobs.errors import LeaseLost, NewerSchemaError, StoreUnavailable
from parallelr.jobs.leases import LEASE_SECONDS, Lease
from parallelr.jobs.records import AttemptRecord, ClaimedJob, JobRecord, RunRecord
from parallelr.jobs.sqlite_queue import SQLiteQueueMixin
from parallelr.jobs.sqlite_workers import SQLiteWorkersMixin
from parallelr.jobs.states import JobState, RunState, sources_of
from parallelr.model import RunInfo, RunSummary, Task, TaskResult, TaskStatus

SCHEMA_VERSION = 5
DEFAULT_BUSY_TIMEOUT = 5.0  # seconds to wait for another process's lock
INSERT_CHUNK = 1000  # rows per executemany when a run's tasks are stored
PAGE_SIZE = 500  # rows per query when jobs are streamed back
FILE_MODE = 0o600  # a new database: the user's tasks, commands and environments are private

# -- the schema ---------------------------------------------------------------------------------


def _in(values: Tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{value}'" for value in values) + ")"


# A migration never changes once released, so version 1 spells out the states it allows; a state
# added to JobState later needs a migration of its own.
_V1_RUN_STATES = ("running", "finished", "interrupted", "stopped", "crashed")
_V1_JOB_STATES = ("pending", "running", "succeeded", "failed", "timeout", "cancelled", "dead")
_VERSION_1 = (
    f"""
    CREATE TABLE runs (
        id             TEXT PRIMARY KEY,
        app_name       TEXT NOT NULL,
        pid            INTEGER,
        create_time    REAL,
        host           TEXT,
        started_at     REAL NOT NULL,
        ended_at       REAL,
        state          TEXT NOT NULL CHECK (state IN {_in(_V1_RUN_STATES)}),
        command        TEXT,
        options        TEXT NOT NULL DEFAULT '{{}}',
        executor       TEXT,
        workers        INTEGER,
        task_count     INTEGER,
        exit_code      INTEGER,
        main_log       TEXT,
        summary_csv    TEXT,
        output_log     TEXT,
        total          INTEGER,
        succeeded      INTEGER,
        failed         INTEGER,
        cancelled      INTEGER,
        stop_reason    TEXT,
        interrupted_by TEXT,
        resumes        INTEGER NOT NULL DEFAULT 0
    )
    """,
    "CREATE INDEX runs_started ON runs (started_at)",
    f"""
    CREATE TABLE jobs (
        id               INTEGER PRIMARY KEY,
        run_id           TEXT REFERENCES runs (id) ON DELETE CASCADE,
        queue            TEXT,
        name             TEXT,
        position         INTEGER,
        source           TEXT NOT NULL,
        argv             TEXT NOT NULL,
        env              TEXT NOT NULL DEFAULT '[]',
        arguments        TEXT NOT NULL DEFAULT '[]',
        line_number      INTEGER,
        shell            INTEGER NOT NULL DEFAULT 0,
        state            TEXT NOT NULL DEFAULT 'pending' CHECK (state IN {_in(_V1_JOB_STATES)}),
        attempts         INTEGER NOT NULL DEFAULT 0,
        max_attempts     INTEGER NOT NULL DEFAULT 1,
        next_attempt_at  REAL NOT NULL DEFAULT 0,
        lease_owner      TEXT,
        lease_expires_at REAL,
        pid              INTEGER,
        worker_id        INTEGER,
        exit_code        INTEGER,
        started_at       REAL,
        ended_at         REAL,
        duration         REAL,
        memory_mb        REAL,
        cpu_percent      REAL,
        last_error       TEXT,
        last_status      TEXT,
        created_at       REAL NOT NULL,
        updated_at       REAL NOT NULL,
        UNIQUE (run_id, position),
        CHECK ((run_id IS NULL) <> (queue IS NULL))
    )
    """,
    "CREATE INDEX jobs_due ON jobs (state, next_attempt_at)",
    "CREATE INDEX jobs_run_state ON jobs (run_id, state)",
    "CREATE UNIQUE INDEX jobs_queue_name ON jobs (queue, name) WHERE queue IS NOT NULL AND name IS NOT NULL",
    """
    CREATE TABLE attempts (
        job_id      INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        attempt     INTEGER NOT NULL,
        status      TEXT NOT NULL,
        exit_code   INTEGER,
        pid         INTEGER,
        worker_id   INTEGER,
        started_at  REAL,
        ended_at    REAL,
        duration    REAL,
        memory_mb   REAL,
        cpu_percent REAL,
        error       TEXT,
        PRIMARY KEY (job_id, attempt)
    ) WITHOUT ROWID
    """,
    "CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)
# Version 2: the run's lease, so that a runner that stops renewing it counts as gone.
_VERSION_2 = (
    "ALTER TABLE runs ADD COLUMN lease_owner TEXT",
    "ALTER TABLE runs ADD COLUMN lease_expires_at REAL",
)
# Version 3: a big run's jobs are stored while it runs. ``planned``: jobs stored so far (NULL for
# older runs: all of them were stored up front); ``plan_digest``: their digest, in order;
# ``source_stamp``: JSON, how the task source looked when the run started.
_VERSION_3 = (
    "ALTER TABLE runs ADD COLUMN planned INTEGER",
    "ALTER TABLE runs ADD COLUMN plan_digest TEXT",
    "ALTER TABLE runs ADD COLUMN source_stamp TEXT",
)
# Version 4: the queue. A job's ``priority``, own ``timeout`` and ``cwd``; ``tries`` numbers its
# history (an interrupted attempt is not counted in ``attempts`` but keeps its history row);
# ``waiting_on`` counts its dependencies not completed yet (``job_deps``); ``cancel_requested``
# asks its worker to stop it. Job IDs (``name``) are unique across queues. ``workers``: the live
# queue workers, their heartbeat and how to wake them.
_VERSION_4 = (
    "ALTER TABLE jobs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE jobs ADD COLUMN timeout REAL",
    "ALTER TABLE jobs ADD COLUMN cwd TEXT",
    "ALTER TABLE jobs ADD COLUMN tries INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE jobs ADD COLUMN waiting_on INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE jobs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE attempts ADD COLUMN worker TEXT",
    "ALTER TABLE attempts ADD COLUMN stdout TEXT",
    "ALTER TABLE attempts ADD COLUMN stderr TEXT",
    "CREATE UNIQUE INDEX jobs_key ON jobs (name) WHERE queue IS NOT NULL",
    "DROP INDEX jobs_queue_name",  # names are unique across queues now: jobs_key covers it
    # The claim's order, for workers of every queue and for workers of some queues.
    "CREATE INDEX jobs_claim ON jobs (priority DESC, next_attempt_at, id)"
    " WHERE queue IS NOT NULL AND state IN ('pending', 'failed', 'timeout')",
    "CREATE INDEX jobs_queue_due ON jobs (queue, priority DESC, next_attempt_at, id)"
    " WHERE queue IS NOT NULL AND state IN ('pending', 'failed', 'timeout')",
    """
    CREATE TABLE job_deps (
        job_id     INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        depends_on INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        PRIMARY KEY (job_id, depends_on)
    ) WITHOUT ROWID
    """,
    "CREATE INDEX job_deps_on ON job_deps (depends_on)",
    """
    CREATE TABLE workers (
        id             TEXT PRIMARY KEY,
        pid            INTEGER NOT NULL,
        host           TEXT NOT NULL,
        slots          INTEGER NOT NULL,
        queues         TEXT NOT NULL DEFAULT '[]',
        started_at     REAL NOT NULL,
        heartbeat_at   REAL NOT NULL,
        jobs_done      INTEGER NOT NULL DEFAULT 0,
        stop_requested INTEGER NOT NULL DEFAULT 0,
        wake           TEXT
    )
    """,
)
# Version 5, for readers of a big queue (``status``, the dashboard): the counts by state read
# jobs_queue_state alone, in its order, instead of every row (100,000 jobs: 9 ms instead of 130
# ms); a page of one state's jobs, newest first, reads jobs_state_row backwards instead of sorting
# every job in that state (90,000 completed: 0.2 ms instead of 125 ms).
_VERSION_5 = (
    "CREATE INDEX jobs_queue_state ON jobs (state, queue, waiting_on, next_attempt_at)"
    " WHERE queue IS NOT NULL",
    "CREATE INDEX jobs_state_row ON jobs (state, id) WHERE queue IS NOT NULL",
)
# MIGRATIONS[n] takes a database from version n to n + 1.
MIGRATIONS: Tuple[Tuple[str, ...], ...] = (_VERSION_1, _VERSION_2, _VERSION_3, _VERSION_4, _VERSION_5)


def schema_version(connection: sqlite3.Connection) -> int:
    return int(connection.execute("PRAGMA user_version").fetchone()[0])


def migrate(connection: sqlite3.Connection) -> None:
    """Bring the schema to :data:`SCHEMA_VERSION` in one transaction.

    ``connection`` must be in autocommit mode (``isolation_level=None``). ``BEGIN IMMEDIATE``
    takes the write lock before the version is read again, so two processes opening a new
    database at once do not both create the tables.

    Raises:
        NewerSchemaError: the database has a higher version than this parallelr knows.
    """
    if schema_version(connection) == SCHEMA_VERSION:
        return
    connection.execute("BEGIN IMMEDIATE")
    try:
        version = schema_version(connection)
        if version > SCHEMA_VERSION:
            raise NewerSchemaError(version, SCHEMA_VERSION)
        for step in MIGRATIONS[version:]:
            for statement in step:
                connection.execute(statement)
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


# -- values <-> columns -------------------------------------------------------------------------
def to_sql_text(value: Optional[str]) -> Union[str, bytes, None]:
    """A str for a TEXT column. A path or argument with undecodable bytes (a lone surrogate from
    ``surrogateescape``) cannot be UTF-8 encoded, so it is stored as its raw bytes instead."""
    if value is None:
        return None
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape")


def from_sql_text(value: Union[str, bytes, None]) -> Optional[str]:
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return value


def _json(value: Any) -> str:
    return json.dumps(value, default=str, separators=(",", ":"))


RUN_COLUMNS = (
    "id, app_name, pid, create_time, host, started_at, ended_at, state, command, options, executor, "
    "workers, task_count, exit_code, main_log, summary_csv, output_log, resumes, lease_owner, "
    "lease_expires_at, planned, plan_digest, source_stamp"
)
JOB_COLUMNS = (
    "id, run_id, position, source, argv, env, arguments, line_number, shell, state, attempts, "
    "max_attempts, exit_code, last_error, last_status, started_at, ended_at, duration"
)
ATTEMPT_COLUMNS = "job_id, attempt, status, exit_code, pid, worker_id, started_at, ended_at, duration, error"


def run_from_row(row: Sequence[Any]) -> RunRecord:
    values = list(row)
    values[8] = from_sql_text(values[8])  # command
    values[9] = json.loads(values[9] or "{}")  # options
    for position in (14, 15, 16):  # log paths
        values[position] = from_sql_text(values[position])
    values[22] = json.loads(values[22]) if values[22] else None  # source_stamp
    return RunRecord(*values)


def job_from_row(row: Sequence[Any]) -> JobRecord:
    (job_id, run_id, position, source, argv, env, arguments, line_number, shell, state, attempts,
     max_attempts, exit_code, last_error, last_status, started_at, ended_at, duration) = row
    return JobRecord(
        id=job_id, run_id=run_id, position=position, source=from_sql_text(source) or "",
        argv=tuple(json.loads(argv)), env=tuple((str(k), str(v)) for k, v in json.loads(env)),
        arguments=tuple(json.loads(arguments)), line_number=line_number, shell=bool(shell),
        state=state, attempts=attempts, max_attempts=max_attempts, exit_code=exit_code,
        last_error=from_sql_text(last_error), last_status=last_status, started_at=started_at,
        ended_at=ended_at, duration=duration,
    )


def attempt_from_row(row: Sequence[Any]) -> AttemptRecord:
    values = list(row)
    values[9] = from_sql_text(values[9])
    return AttemptRecord(*values)


def _transient(exc: BaseException) -> bool:
    """Worth trying again unchanged: a lock, a busy file, a full disk, an I/O error. A corrupt
    file (``DatabaseError``), a broken constraint or a programming error is not."""
    return isinstance(exc, sqlite3.OperationalError)


def _unavailable(location: str, exc: BaseException) -> StoreUnavailable:
    return StoreUnavailable(location, _reason(exc), transient=_transient(exc))


def _reason(exc: BaseException) -> str:
    """A few words for a message: ``not a directory``, ``database is locked``, ..."""
    if isinstance(exc, FileExistsError):  # mkdir: a file stands where a directory must be
        return "not a directory"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower() if exc.strerror[:1].isupper() else exc.strerror
    return str(exc) or type(exc).__name__


def _chunks(items: Iterable[Any], size: int) -> Iterator[List[Any]]:
    iterator = iter(items)
    while True:
        chunk = list(itertools.islice(iterator, size))
        if not chunk:
            return
        yield chunk


def _marks(count: int) -> str:
    return ", ".join("?" * count)


def _values(states: Sequence[JobState]) -> List[str]:
    return [state.value for state in states]


# -- statements ---------------------------------------------------------------------------------
_INSERT_JOB_SQL = (
    "INSERT INTO jobs (run_id, queue, position, source, argv, env, arguments, line_number, shell, state,"
    " max_attempts, next_attempt_at, created_at, updated_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_START_SQL = (
    "UPDATE jobs SET state = ?, attempts = ?, worker_id = ?, started_at = ?, ended_at = NULL,"
    " lease_owner = ?, lease_expires_at = NULL, updated_at = ? WHERE run_id = ? AND position = ?"
)
_RAN_SQL = (
    "UPDATE jobs SET state = ?, attempts = ?, next_attempt_at = ?, lease_owner = NULL, pid = ?,"
    " worker_id = ?, exit_code = ?, started_at = ?, ended_at = ?, duration = ?, memory_mb = ?,"
    " cpu_percent = ?, last_error = ?, last_status = ?, updated_at = ? WHERE run_id = ? AND position = ?"
)
_HISTORY_SQL = (
    "INSERT OR REPLACE INTO attempts (job_id, attempt, status, exit_code, pid, worker_id, started_at,"
    " ended_at, duration, memory_mb, cpu_percent, error)"
    " SELECT id, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? FROM jobs WHERE run_id = ? AND position = ?"
)
# Never started (cancelled before it got a slot): the attempt count stays what it was.
_NOT_RAN_SQL = (
    "UPDATE jobs SET state = ?, next_attempt_at = ?, lease_owner = NULL, last_error = ?, last_status = ?,"
    " updated_at = ? WHERE run_id = ? AND position = ?"
)
# An attempt whose holder is gone ends as CANCELLED in the history (requeue, reclaim).
_ABANDONED_SQL = (
    "INSERT OR REPLACE INTO attempts (job_id, attempt, status, worker_id, started_at, ended_at, error)"
    " SELECT id, attempts, ?, worker_id, started_at, ?, ? FROM jobs"
    " WHERE {where} AND state = ? AND attempts > 0"
)

# Tasks that never got a slot, cancelled in one statement per range of positions (a Ctrl+C with a
# million tasks left): a running job is not among them (its attempt ends on its own record).
_NOT_STARTED_FROM = _values(
    tuple(state for state in sources_of(JobState.CANCELLED) if state is not JobState.RUNNING)
)
_NOT_STARTED_SQL = (
    "UPDATE jobs SET state = ?, next_attempt_at = ?, lease_owner = NULL, last_error = ?, last_status = ?,"
    " updated_at = ? WHERE run_id = ? AND position BETWEEN ? AND ?"
    f" AND state IN ({_marks(len(_NOT_STARTED_FROM))})"
)
# A job requeued is pending afterwards; one already pending just becomes due now.
_REQUEUABLE = _values((JobState.PENDING, *sources_of(JobState.PENDING)))
_CLAIMABLE = _values(sources_of(JobState.RUNNING))
LEASE_EXPIRED = "its holder's lease expired; the job was claimed again"


def _end_rows(end: AttemptEnd) -> Tuple[Tuple[Any, ...], Optional[Tuple[Any, ...]]]:
    """The parameters of an attempt's job update and history row (None: it never ran)."""
    result = end.result
    status = result.status.value
    error = to_sql_text(result.error_message or None)
    where = (end.run_id, end.position)
    if not end.ran:
        return (end.state.value, end.next_attempt_at, error, status, end.at, *where), None
    figures = (result.pid, result.worker_id, result.exit_code, result.start_time, result.end_time,
               result.duration, result.memory_mb, result.cpu_percent, error)
    job = (end.state.value, result.attempt, end.next_attempt_at, *figures, status, end.at, *where)
    attempt = (result.attempt, status, figures[2], *figures[:2], *figures[3:], *where)
    return job, attempt


class SQLiteJobStore(SQLiteQueueMixin, SQLiteWorkersMixin):
    """The :class:`~parallelr.jobs.store.JobStore` and
    :class:`~parallelr.jobs.store.QueueStore` in the SQLite file ``path``.

    Not thread-safe: one thread uses it at a time.
    """

    # What apply_batch may call besides the task records (see parallelr.jobs.batch).
    _BATCH_METHODS = frozenset({"finish_run", "renew_run_lease", "cancel_not_started"})

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path = path
        self.connection = connection

    @property
    def location(self) -> str:
        return str(self.path)

    # -- the store itself -----------------------------------------------------------------------
    @classmethod
    def open(cls, path: Path, create: bool = True,
             busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> Optional[SQLiteJobStore]:
        """Open (and with ``create``, create) the database and bring its schema up to date.

        Args:
            path: the database file; with ``create`` its directory is created too.
            create: create a missing database (mode 0600); without it, a missing one is None.
            busy_timeout: seconds to wait for another process's lock before giving up.

        Returns:
            The store, or None when ``create`` is false and there is no database yet.

        Raises:
            StoreUnavailable: it cannot be opened (corrupt, locked, not a directory, newer schema).
        """
        path = Path(path)
        try:
            if create:
                path.parent.mkdir(parents=True, exist_ok=True)
                _create_private(path)
            elif not path.exists():
                return None
            uri = f"{path.resolve().as_uri()}?mode={'rwc' if create else 'rw'}"
            connection = sqlite3.connect(
                uri, uri=True, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise StoreUnavailable(str(path), _reason(exc), transient=_transient(exc)) from None
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("PRAGMA foreign_keys=ON")
            migrate(connection)
        except (sqlite3.Error, NewerSchemaError) as exc:
            connection.close()
            raise StoreUnavailable(str(path), _reason(exc), transient=_transient(exc)) from None
        return cls(path, connection)

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.connection.close()

    def change_counter(self) -> int:
        """A number that changes whenever another connection commits (SQLite's ``data_version``):
        how a reader learns, cheaply, that there is something new to read."""
        with self._reading():
            return int(self.connection.execute("PRAGMA data_version").fetchone()[0])

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on an exception); sqlite errors
        become :class:`~parallelr.jobs.errors.StoreUnavailable`."""
        connection = self.connection
        try:
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
        except sqlite3.Error as exc:
            raise _unavailable(self.location, exc) from None

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        """Reads fail like writes: a corrupt page a query runs into is a StoreUnavailable."""
        try:
            yield
        except sqlite3.Error as exc:
            raise _unavailable(self.location, exc) from None

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """The caller's transaction, or one of its own (a claim must be atomic either way)."""
        if self.connection.in_transaction:
            yield
        else:
            with self.transaction():
                yield

    # -- runs ------------------------------------------------------------------------------------
    def insert_run(self, run: RunInfo, create_time: Optional[float], host: str, lease: Lease,
                   source_stamp: Optional[Dict[str, Any]] = None) -> None:
        options = {key: value for key, value in run.options.items() if not key.startswith("_")}
        self.connection.execute(
            "INSERT INTO runs (id, app_name, pid, create_time, host, started_at, state, command, options,"
            " executor, workers, task_count, main_log, summary_csv, output_log, lease_owner,"
            " lease_expires_at, planned, source_stamp)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?)",
            (run.run_id, run.app_name, run.pid, create_time, host, run.started_at, RunState.RUNNING.value,
             to_sql_text(run.command_template), _json(options), run.executor, run.workers, run.task_count,
             to_sql_text(run.paths.main_log), to_sql_text(run.paths.summary_csv),
             to_sql_text(run.paths.output_log), lease.owner, lease.expires_at,
             None if source_stamp is None else _json(source_stamp)),
        )

    def reopen_run(
        self, run: RunInfo, create_time: Optional[float], host: str, lease: Lease,
        previous_owner: Optional[str], now: float,
    ) -> bool:
        cursor = self.connection.execute(
            "UPDATE runs SET pid = ?, create_time = ?, host = ?, state = ?, ended_at = NULL,"
            " exit_code = NULL, stop_reason = NULL, interrupted_by = NULL, resumes = resumes + 1,"
            " main_log = ?, summary_csv = ?, output_log = ?, lease_owner = ?, lease_expires_at = ?"
            " WHERE id = ? AND (lease_owner IS NULL OR lease_expires_at IS NULL OR lease_expires_at <= ?"
            " OR lease_owner IS ?)",
            (run.pid, create_time, host, RunState.RUNNING.value, to_sql_text(run.paths.main_log),
             to_sql_text(run.paths.summary_csv), to_sql_text(run.paths.output_log), lease.owner,
             lease.expires_at, run.run_id, now, previous_owner),
        )
        return cursor.rowcount == 1

    def renew_run_lease(self, run_id: str, owner: str, expires_at: float) -> None:
        cursor = self.connection.execute(
            "UPDATE runs SET lease_expires_at = ? WHERE id = ? AND lease_owner = ? AND state = ?",
            (expires_at, run_id, owner, RunState.RUNNING.value),
        )
        if cursor.rowcount != 1:
            raise LeaseLost(f"run {run_id}", owner)

    def finish_run(self, run_id: str, summary: RunSummary, now: float) -> None:
        if summary.interrupted_by:
            state = RunState.INTERRUPTED
        elif summary.stop_reason:
            state = RunState.STOPPED
        else:
            state = RunState.FINISHED
        self.connection.execute(
            "UPDATE runs SET state = ?, ended_at = ?, exit_code = ?, total = ?, succeeded = ?, failed = ?,"
            " cancelled = ?, stop_reason = ?, interrupted_by = ?, lease_owner = NULL, lease_expires_at = NULL"
            " WHERE id = ?",
            (state.value, now, summary.exit_code, summary.total, summary.succeeded, summary.failed,
             summary.cancelled, to_sql_text(summary.stop_reason), summary.interrupted_by, run_id),
        )

    # -- jobs ------------------------------------------------------------------------------------
    @staticmethod
    def _job_row(run_id: Optional[str], queue: Optional[str], task: Task, max_attempts: int,
                 now: float) -> Tuple[Any, ...]:
        return (run_id, queue, task.index if run_id else None, to_sql_text(task.source),
                _json(list(task.argv)), _json([list(pair) for pair in task.env]), _json(list(task.arguments)),
                task.line_number, int(task.shell), JobState.PENDING.value, max_attempts, now, now, now)

    def insert_jobs(self, run_id: str, tasks: Iterable[Task], max_attempts: int, now: float) -> int:
        count = self.add_jobs(run_id, tasks, max_attempts, now)
        self.connection.execute(
            "UPDATE runs SET task_count = ?, planned = ? WHERE id = ?", (count, count, run_id)
        )
        return count

    def add_jobs(self, run_id: str, tasks: Iterable[Task], max_attempts: int, now: float) -> int:
        count = 0
        rows = (self._job_row(run_id, None, task, max_attempts, now) for task in tasks)
        for chunk in _chunks(rows, INSERT_CHUNK):
            self.connection.executemany(_INSERT_JOB_SQL, chunk)
            count += len(chunk)
        return count

    def record_planned(self, run_id: str, planned: int, digest: Optional[str],
                       task_count: Optional[int] = None) -> None:
        self.connection.execute(
            "UPDATE runs SET planned = ?, plan_digest = ?, task_count = COALESCE(?, task_count) WHERE id = ?",
            (planned, digest, task_count, run_id),
        )

    def cancel_not_started(self, run_id: str, first: int, last: int, error: Optional[str], now: float) -> int:
        cursor = self.connection.execute(
            _NOT_STARTED_SQL,
            (JobState.CANCELLED.value, now, to_sql_text(error or None), TaskStatus.CANCELLED.value, now,
             run_id, first, last, *_NOT_STARTED_FROM),
        )
        return cursor.rowcount

    def enqueue(self, queue: str, tasks: Iterable[Task], max_attempts: int, now: float) -> List[int]:
        execute = self.connection.execute
        return [int(execute(_INSERT_JOB_SQL, self._job_row(None, queue, task, max_attempts, now)).lastrowid)
                for task in tasks]

    def task_started(self, run_id: str, task: Task, worker_id: int, now: float, owner: str) -> None:
        self.apply_batch([("task_started", (run_id, task, worker_id, now, owner))])

    def attempt_ended(
        self, run_id: str, result: TaskResult, now: float, retry_delay: Optional[float]
    ) -> None:
        self.apply_batch([("attempt_ended", (run_id, result, now, retry_delay))])

    def apply_batch(self, records: Sequence[Record]) -> None:
        """One ``executemany`` per statement instead of one ``execute`` per record."""
        plan = plan_batch(records, self._states_of(job_keys(records)))
        ran: List[Tuple[Any, ...]] = []
        history: List[Tuple[Any, ...]] = []
        not_ran: List[Tuple[Any, ...]] = []
        for end in plan.ends:
            job, attempt = _end_rows(end)
            if attempt is None:
                not_ran.append(job)
            else:
                ran.append(job)
                history.append(attempt)
        running = JobState.RUNNING.value
        starts = [(running, start.attempt, start.worker_id, start.at, start.owner, start.at, start.run_id,
                   start.position) for start in plan.starts]
        execute_many = self.connection.executemany
        for sql, rows in ((_RAN_SQL, ran), (_HISTORY_SQL, history), (_NOT_RAN_SQL, not_ran),
                          (_START_SQL, starts)):
            if rows:
                execute_many(sql, rows)
        for name, args in plan.others:
            if name not in self._BATCH_METHODS:
                raise ValueError(f"unknown record {name!r} in a batch")
            getattr(self, name)(*args)

    def _states_of(self, keys: Iterable[Tuple[str, int]]) -> Dict[Tuple[str, int], str]:
        """The stored state of each ``(run ID, position)``, read inside the batch's transaction."""
        by_run: Dict[str, List[int]] = {}
        for run_id, position in keys:
            by_run.setdefault(run_id, []).append(position)
        states: Dict[Tuple[str, int], str] = {}
        for run_id, positions in by_run.items():
            for group in _chunks(positions, PAGE_SIZE):
                rows = self.connection.execute(
                    "SELECT position, state FROM jobs"
                    f" WHERE run_id = ? AND position IN ({_marks(len(group))})",
                    (run_id, *group),
                )
                states.update(((run_id, position), state) for position, state in rows)
        return states

    def claim(
        self, owner: str, now: float, *, queue: Optional[str] = None, run_id: Optional[str] = None,
        limit: int = 1, lease_seconds: float = LEASE_SECONDS,
    ) -> List[ClaimedJob]:
        if (queue is None) == (run_id is None):
            raise ValueError("claim() takes a queue or a run_id")
        scope, value = ("queue = ?", queue) if queue is not None else ("run_id = ?", run_id)
        lease = Lease.starting(owner, now, lease_seconds)
        running = JobState.RUNNING.value
        with self._writing():  # BEGIN IMMEDIATE holds the write lock: select + update are atomic
            ids = [row[0] for row in self.connection.execute(
                f"SELECT id FROM jobs WHERE {scope} AND ((state IN ({_marks(len(_CLAIMABLE))})"
                " AND next_attempt_at <= ?) OR (state = ? AND lease_expires_at <= ?))"
                " ORDER BY next_attempt_at, id LIMIT ?",
                (value, *_CLAIMABLE, now, running, now, limit),
            )]
            if not ids:
                return []
            where = f"id IN ({_marks(len(ids))})"
            # running -> pending -> running: the abandoned attempt keeps its place in the history
            self.connection.execute(
                _ABANDONED_SQL.format(where=where),
                (TaskStatus.CANCELLED.value, now, LEASE_EXPIRED, *ids, running),
            )
            self.connection.execute(
                f"UPDATE jobs SET state = ?, attempts = attempts + 1, lease_owner = ?, lease_expires_at = ?,"
                f" started_at = ?, ended_at = NULL, updated_at = ? WHERE {where}",
                (running, lease.owner, lease.expires_at, now, now, *ids),
            )
            found = {job.id: job for job in self.jobs_by_ids(ids)}
        return [ClaimedJob(found[job_id], lease) for job_id in ids]

    def renew_job_leases(self, owner: str, job_ids: Sequence[int], expires_at: float) -> int:
        renewed = 0
        for group in _chunks(job_ids, PAGE_SIZE):
            cursor = self.connection.execute(
                f"UPDATE jobs SET lease_expires_at = ? WHERE lease_owner = ? AND state = ?"
                f" AND id IN ({_marks(len(group))})",
                (expires_at, owner, JobState.RUNNING.value, *group),
            )
            renewed += cursor.rowcount
        return renewed

    def requeue(self, run_id: str, job_ids: Optional[Sequence[int]], now: float, why: str) -> int:
        base = f"run_id = ? AND state IN ({_marks(len(_REQUEUABLE))})"
        groups: Iterable[List[Any]] = [[]] if job_ids is None else _chunks(job_ids, PAGE_SIZE)
        count = 0
        for group in groups:
            where = base + (f" AND id IN ({_marks(len(group))})" if job_ids is not None else "")
            params = (run_id, *_REQUEUABLE, *group)
            self.connection.execute(
                _ABANDONED_SQL.format(where=where),
                (TaskStatus.CANCELLED.value, now, to_sql_text(why), *params, JobState.RUNNING.value),
            )
            cursor = self.connection.execute(
                "UPDATE jobs SET state = ?, next_attempt_at = ?, lease_owner = NULL, lease_expires_at = NULL,"
                f" updated_at = ? WHERE {where}",
                (JobState.PENDING.value, now, now, *params),
            )
            count += cursor.rowcount
        return count

    # -- reading ---------------------------------------------------------------------------------
    def get_run(self, run_id: str) -> Optional[RunRecord]:
        with self._reading():
            row = self.connection.execute(
                f"SELECT {RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,)
            ).fetchone()
            return run_from_row(row) if row else None

    def latest_run(self, app_name: Optional[str] = None) -> Optional[RunRecord]:
        where, params = ("WHERE app_name = ?", (app_name,)) if app_name else ("", ())
        with self._reading():
            row = self.connection.execute(
                f"SELECT {RUN_COLUMNS} FROM runs {where} ORDER BY started_at DESC, id DESC LIMIT 1", params
            ).fetchone()
            return run_from_row(row) if row else None

    def list_runs(self, limit: Optional[int] = None) -> List[RunRecord]:
        with self._reading():
            rows = self.connection.execute(
                f"SELECT {RUN_COLUMNS} FROM runs ORDER BY started_at DESC, id DESC LIMIT ?",
                (-1 if limit is None else limit,),
            ).fetchall()
            return [run_from_row(row) for row in rows]

    def job_counts(self, run_id: str) -> Dict[str, int]:
        with self._reading():
            rows = self.connection.execute(
                "SELECT state, COUNT(*) FROM jobs WHERE run_id = ? GROUP BY state", (run_id,)
            ).fetchall()
            return dict(rows)

    def state_counts(self, run_id: str) -> Dict[Tuple[str, str], int]:
        with self._reading():
            rows = self.connection.execute(
                "SELECT state, COALESCE(last_status, ''), COUNT(*) FROM jobs WHERE run_id = ?"
                " GROUP BY state, COALESCE(last_status, '')",
                (run_id,),
            ).fetchall()
            return {(state, last_status): count for state, last_status, count in rows}

    def iter_jobs(
        self, run_id: str, *, exclude_succeeded: bool = False, states: Optional[Sequence[str]] = None,
        after: int = -1,
    ) -> Iterator[JobRecord]:
        """No transaction stays open between pages, so a run that writes meanwhile is never held
        up, and memory stays flat. ``after``: start after this position (a page of a long run)."""
        conditions = ["run_id = ?", "position > ?"]
        extra: List[Any] = []
        if exclude_succeeded:
            conditions.append("state != ?")
            extra.append(JobState.SUCCEEDED.value)
        if states:
            conditions.append(f"state IN ({_marks(len(states))})")
            extra.extend(str(state) for state in states)
        query = (
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE {' AND '.join(conditions)}"
            f" ORDER BY position LIMIT {PAGE_SIZE}"
        )
        while True:
            with self._reading():
                rows = self.connection.execute(query, (run_id, after, *extra)).fetchall()
            for row in rows:
                yield job_from_row(row)
            if len(rows) < PAGE_SIZE:
                return
            after = rows[-1][2]

    def jobs_by_ids(self, job_ids: Sequence[int]) -> List[JobRecord]:
        found = list(self.iter_jobs_by_ids(job_ids))
        found.sort(key=lambda job: (job.run_id or "", job.position or 0, job.id))
        return found

    def iter_jobs_by_ids(self, job_ids: Sequence[int]) -> Iterator[JobRecord]:
        """Within one run the IDs were given in position order, so this is also the run's order."""
        for group in _chunks(sorted(set(job_ids)), PAGE_SIZE):
            with self._reading():
                rows = self.connection.execute(
                    f"SELECT {JOB_COLUMNS} FROM jobs WHERE id IN ({_marks(len(group))}) ORDER BY id", group
                ).fetchall()
            for row in rows:
                yield job_from_row(row)

    def dead_jobs(self, run_id: Optional[str] = None) -> Iterator[JobRecord]:
        dead = JobState.DEAD.value
        where, params = (
            ("state = ? AND run_id = ?", (dead, run_id)) if run_id
            else ("state = ? AND run_id IS NOT NULL", (dead,))  # the queue's dead jobs are queuectl's
        )
        query = f"SELECT {JOB_COLUMNS} FROM jobs WHERE {where} AND id > ? ORDER BY id LIMIT {PAGE_SIZE}"
        after = -1
        while True:  # a page at a time, as iter_jobs: no statement stays open between rows
            with self._reading():
                rows = self.connection.execute(query, (*params, after)).fetchall()
            for row in rows:
                yield job_from_row(row)
            if len(rows) < PAGE_SIZE:
                return
            after = rows[-1][0]

    def run_attempts(self, run_id: str) -> Iterator[Tuple[int, str, AttemptRecord]]:
        """``(position, source, attempt)`` of every attempt of a run's jobs, by start time (its
        timeline), a page at a time; then the attempts still running (status ``RUNNING``, no end:
        an attempt gets its history row when it ends)."""
        columns = ", ".join(f"a.{name.strip()}" for name in ATTEMPT_COLUMNS.split(","))
        query = (
            f"SELECT j.position, j.source, {columns} FROM attempts a JOIN jobs j ON j.id = a.job_id"
            " WHERE j.run_id = ? AND (COALESCE(a.started_at, 0), a.job_id, a.attempt) > (?, ?, ?)"
            f" ORDER BY COALESCE(a.started_at, 0), a.job_id, a.attempt LIMIT {PAGE_SIZE}"
        )
        after: Tuple[float, int, int] = (-1.0, -1, -1)
        while True:
            with self._reading():
                rows = self.connection.execute(query, (run_id, *after)).fetchall()
            for row in rows:
                yield row[0], from_sql_text(row[1]) or "", attempt_from_row(row[2:])
            if len(rows) < PAGE_SIZE:
                break
            last = rows[-1]
            after = (last[8] or 0.0, last[2], last[3])
        with self._reading():
            running = self.connection.execute(
                "SELECT position, source, id, attempts, 'RUNNING', NULL, pid, worker_id, started_at,"
                " NULL, NULL, NULL FROM jobs WHERE run_id = ? AND state = 'running' AND NOT EXISTS (SELECT 1"
                " FROM attempts WHERE attempts.job_id = jobs.id AND attempts.attempt = jobs.attempts)"
                " ORDER BY started_at",
                (run_id,),
            ).fetchall()
        for row in running:
            yield row[0], from_sql_text(row[1]) or "", attempt_from_row(row[2:])

    def attempts_of(self, job_id: int) -> List[AttemptRecord]:
        with self._reading():
            rows = self.connection.execute(
                f"SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE job_id = ? ORDER BY attempt", (job_id,)
            ).fetchall()
            return [attempt_from_row(row) for row in rows]


def _create_private(path: Path) -> None:
    """Create a missing database file as 0600 before SQLite opens it (SQLite would create it
    with the umask's mode, often world-readable); an existing file keeps its mode."""
    if path.exists():
        return
    with contextlib.suppress(FileExistsError):  # another process created it meanwhile
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
