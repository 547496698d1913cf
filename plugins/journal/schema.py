"""The journal's SQLite schema: one design for batch runs and for a persistent job queue.

Tables
======

``runs``: one row per batch run (``parallelr -r``), keyed by the run ID the core prints
(``20261123-104148-272c69``). It keeps what is needed to run it again (``command``, ``options``
as JSON), who runs it (``pid`` + ``create_time`` of the runner process, ``host``: together they
prove whether the runner is still alive), its ``state`` (``running``, ``finished``,
``interrupted``, ``stopped``; a ``running`` row whose runner is gone is *shown* as ``crashed``),
its log paths, exit code and final counts.

``jobs``: one row per unit of work. A job of a batch run has ``run_id`` and ``position`` (the
task's 1-based index in the run, unique per run); a job of a named queue (the queuectl-style
``enqueue`` / ``worker start`` of the next issue) has ``queue`` (and optionally a user-given
``name``) instead. Either way a job is a task with a state, attempts, a next-attempt time and a
lease:

* what to run: ``source``, ``argv``/``env``/``arguments`` (JSON), ``line_number``, ``shell``;
* ``state``: ``pending`` → ``running`` → ``succeeded`` | ``failed``/``timeout`` (an attempt
  failed and a retry is due at ``next_attempt_at``) | ``dead`` (the last attempt failed: the
  dead-letter list; ``last_status`` keeps FAILED/TIMEOUT/ERROR) | ``cancelled`` (never ran or
  was stopped by a shutdown);
* ``attempts`` (attempts started so far) and ``max_attempts``;
* ``lease_owner`` / ``lease_expires_at``: who holds the job while it runs. A batch run's
  runner writes ``pid:<runner pid>`` without an expiry (the run row proves whether it is alive);
  a queue worker writes its worker ID with an expiry it renews while the job runs;
* the latest attempt's figures: ``pid``, ``worker_id``, ``exit_code``, ``started_at``,
  ``ended_at``, ``duration``, ``memory_mb``, ``cpu_percent``, ``last_error``, ``last_status``.

``attempts``: the history, one row per attempt of a job (``job_id``, ``attempt``), with its
status, exit code, times and error, so a task retried three times has three rows.

``settings``: key/value pairs for the queue's persistent configuration (``config set``).

Claiming work
=============

A queue worker and a batch run claim work the same way: one ``UPDATE`` that moves a due
``pending`` job to ``running`` and sets the lease, so two claimers can never both get it::

    UPDATE jobs SET state = 'running', attempts = attempts + 1,
                    lease_owner = :me, lease_expires_at = :now + :lease_seconds,
                    started_at = :now, updated_at = :now
     WHERE id = (SELECT id FROM jobs
                  WHERE queue = :queue AND state = 'pending' AND next_attempt_at <= :now
                  ORDER BY next_attempt_at, id LIMIT 1)
       AND state = 'pending'
    RETURNING id, argv, env, attempts

``jobs_due`` (``state, next_attempt_at``) makes the inner query an index range scan. A failed
attempt sets ``state = 'failed'`` (or ``'timeout'``) and ``next_attempt_at = now + backoff``; the
queue's scheduler turns due ``failed``/``timeout`` jobs back into ``pending`` (or claims them
with ``state IN ('pending', 'failed', 'timeout')``), and a job whose lease expired
(``state = 'running' AND lease_expires_at < now``) is reclaimed the same way. A batch run
orders its own jobs (by ``position``) in memory, so it writes the same columns from the task
start hook instead of selecting: ``state = 'running'``, ``attempts``, ``lease_owner``.

Versioning
==========

``PRAGMA user_version`` holds the schema version. :func:`migrate` creates the schema in an
empty database and upgrades an older one step by step; a database written by a newer
parallelr (a higher version) is refused rather than misread.
"""

from __future__ import annotations

import sqlite3
from typing import Tuple

SCHEMA_VERSION = 1

RUN_STATES = ("running", "finished", "interrupted", "stopped", "crashed")
JOB_STATES = ("pending", "running", "succeeded", "failed", "timeout", "cancelled", "dead")


def _in(values: Tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{value}'" for value in values) + ")"


# Version 1: each statement of the step, run in one transaction.
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
        state          TEXT NOT NULL CHECK (state IN {_in(RUN_STATES)}),
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
        state            TEXT NOT NULL DEFAULT 'pending' CHECK (state IN {_in(JOB_STATES)}),
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

# MIGRATIONS[n] takes a database from version n to n + 1.
MIGRATIONS: Tuple[Tuple[str, ...], ...] = (_VERSION_1,)


class NewerSchemaError(Exception):
    """The database was written by a newer parallelr; the message says so."""


def schema_version(connection: sqlite3.Connection) -> int:
    return int(connection.execute("PRAGMA user_version").fetchone()[0])


def migrate(connection: sqlite3.Connection) -> None:
    """Bring the schema to :data:`SCHEMA_VERSION`; each step commits with its new version.

    ``connection`` must be in autocommit mode (``isolation_level=None``). ``BEGIN IMMEDIATE``
    takes the write lock before the version is read again, so two processes opening a new
    database at once do not both create the tables.
    """
    if schema_version(connection) == SCHEMA_VERSION:
        return
    connection.execute("BEGIN IMMEDIATE")
    try:
        version = schema_version(connection)
        if version > SCHEMA_VERSION:
            raise NewerSchemaError(
                f"schema version {version} is newer than this parallelr understands ({SCHEMA_VERSION})"
            )
        for step in MIGRATIONS[version:]:
            for statement in step:
                connection.execute(statement)
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
