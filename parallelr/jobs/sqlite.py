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
import os
import sqlite3
import time
from pathlib import Path
from typing import Optional

from parallelr.jobs.errors import NewerSchemaError, StoreUnavailable
from parallelr.jobs.schema import MIGRATIONS, SCHEMA_VERSION
from parallelr.jobs.sql_dialect import SQLITE
from parallelr.jobs.sql_store import SqlJobStore

DEFAULT_BUSY_TIMEOUT = 5.0  # seconds to wait for another process's lock
FILE_MODE = 0o600  # a new database: the user's tasks, commands and environments are private


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


def _use_wal(connection: sqlite3.Connection, busy_timeout: float) -> None:
    """``PRAGMA journal_mode=WAL``, waiting for a lock as long as any other statement would.

    On a database that is not in WAL mode yet (a new file), the switch needs a lock that SQLite
    does not wait for: two processes (or threads) opening a new journal at once would see one of
    them fail at once with "database is locked", whatever the busy timeout. It is asked again,
    with a backoff, until ``busy_timeout`` is over; only that first open can meet the race."""
    deadline = time.monotonic() + busy_timeout
    delay = 0.001
    while True:
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


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


class SQLiteJobStore(SqlJobStore):
    """The :class:`~parallelr.jobs.store.JobStore` and
    :class:`~parallelr.jobs.store.QueueStore` in the SQLite file ``path``.

    Not thread-safe: one thread uses it at a time.
    """

    dialect = SQLITE
    integrity_error = (sqlite3.IntegrityError,)
    database_errors = (sqlite3.Error,)
    _BEGIN = "BEGIN IMMEDIATE"  # the write lock at the start: a busy file fails at once, not half-way

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path = path
        self.connection = connection

    @property
    def location(self) -> str:
        return str(self.path)

    @property
    def address(self) -> str:
        """What :func:`~parallelr.jobs.opening.open_store` takes to open this store again."""
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
            _use_wal(connection, busy_timeout)
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

    def now(self) -> float:
        """This machine's clock: every process that uses a SQLite file runs on this machine."""
        return time.time()

    def notify_workers(self) -> bool:
        """False: SQLite has no notifications; the queue wakes its workers with datagrams."""
        return False

    def listener(self) -> None:
        """None: see :meth:`notify_workers`."""
        return None

    def change_counter(self) -> int:
        """A number that changes whenever another connection commits (SQLite's ``data_version``):
        how a reader learns, cheaply, that there is something new to read."""
        with self._reading():
            return int(self.connection.execute("PRAGMA data_version").fetchone()[0])

    def _unavailable(self, exc: BaseException) -> StoreUnavailable:
        return _unavailable(self.location, exc)


def _create_private(path: Path) -> None:
    """Create a missing database file as 0600 before SQLite opens it (SQLite would create it
    with the umask's mode, often world-readable); an existing file keeps its mode."""
    if path.exists():
        return
    with contextlib.suppress(FileExistsError):  # another process created it meanwhile
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
