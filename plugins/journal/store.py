"""The journal's SQLite store: open (or refuse, in one line), write run and job states, read them.

One :class:`JournalStore` wraps one connection in autocommit mode; writes happen inside
:meth:`JournalStore.transaction` (``BEGIN IMMEDIATE``: the write lock is taken at the start, so a
busy database fails at once with a clear error instead of half-way through). The database runs
in WAL mode with ``synchronous=NORMAL``: a committed transaction survives a crash (kill -9) of
the process, and readers (``parallelr runs list``) never block the run that writes.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from parallelr.errors import ParallelrError
from parallelr.model import RunInfo, RunSummary, Task, TaskResult, TaskStatus
from parallelr.plugins.journal.records import AttemptRecord, JobRecord, RunRecord, to_sql_text
from parallelr.plugins.journal.schema import NewerSchemaError, migrate

BUSY_TIMEOUT_VARIABLE = "PARALLELR_JOURNAL_BUSY_TIMEOUT"  # seconds; tests make it short
DEFAULT_BUSY_TIMEOUT = 5.0
INSERT_CHUNK = 1000  # rows per executemany when a run's tasks are stored
PAGE_SIZE = 500  # rows per query when a run's jobs are streamed back

# The state a job ends in, by the status of its final attempt.
FINAL_STATE = {
    TaskStatus.SUCCESS: "succeeded",
    TaskStatus.FAILED: "dead",
    TaskStatus.TIMEOUT: "dead",
    TaskStatus.ERROR: "dead",
    TaskStatus.CANCELLED: "cancelled",
}
# The state of a job whose attempt failed and that waits for its retry.
RETRY_STATE = {TaskStatus.TIMEOUT: "timeout"}


_START_SQL = (
    "UPDATE jobs SET state = 'running', attempts = ?, worker_id = ?, started_at = ?, ended_at = NULL,"
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


def _ended_params(
    run_id: str, result: TaskResult, now: float, retry_delay: Optional[float]
) -> Tuple[Tuple[Any, ...], Optional[Tuple[Any, ...]]]:
    """The parameters of an attempt's job update and history row (None: it never ran)."""
    index = result.task.index
    status = result.status
    if retry_delay is not None:
        state = RETRY_STATE.get(status, "failed")
        next_attempt = now + retry_delay
    else:
        state = FINAL_STATE[status]
        next_attempt = now
    error = to_sql_text(result.error_message or None)
    if result.start_time is None:
        return (state, next_attempt, error, status.value, now, run_id, index), None
    figures = (result.pid, result.worker_id, result.exit_code, result.start_time, result.end_time,
               result.duration, result.memory_mb, result.cpu_percent, error)
    job = (state, result.attempt, next_attempt, *figures, status.value, now, run_id, index)
    attempt = (result.attempt, status.value, figures[2], *figures[:2], *figures[3:], run_id, index)
    return job, attempt


class JournalUnavailable(ParallelrError):
    """The database cannot be opened or written; the run stops before its first task."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"cannot use the journal {path}: {reason}; run with --no-journal to run without it")
        self.path = path
        self.reason = reason

    def without_hint(self) -> ParallelrError:
        """The same problem where --no-journal is no way out (reading the journal, --resume)."""
        return ParallelrError(f"cannot use the journal {self.path}: {self.reason}")


def journal_path(settings: Any, home: Path) -> Path:
    """``journal.path`` (``~`` expanded; relative to ``~/<app>``), or ``~/<app>/state.db``."""
    configured = settings.journal.path if settings is not None else ""
    if not configured:
        return home / "state.db"
    path = Path(os.path.expanduser(configured))
    return path if path.is_absolute() else home / path


def busy_timeout() -> float:
    """How long to wait for another process's lock before giving up (seconds)."""
    raw = os.environ.get(BUSY_TIMEOUT_VARIABLE, "")
    try:
        value = float(raw) if raw else DEFAULT_BUSY_TIMEOUT
    except ValueError:
        return DEFAULT_BUSY_TIMEOUT
    return value if value >= 0 else DEFAULT_BUSY_TIMEOUT


def _reason(exc: BaseException) -> str:
    if isinstance(exc, FileExistsError):  # mkdir: a file stands where a directory must be
        return "not a directory"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower() if exc.strerror[:1].isupper() else exc.strerror
    return str(exc) or type(exc).__name__


def _json(value: Any) -> str:
    return json.dumps(value, default=str, separators=(",", ":"))


def _chunks(items: Iterable[Any], size: int) -> Iterator[List[Any]]:
    iterator = iter(items)
    while True:
        chunk = list(itertools.islice(iterator, size))
        if not chunk:
            return
        yield chunk


class JournalStore:
    """The journal database at ``path``. Not thread-safe: one thread uses it at a time."""

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path = path
        self.connection = connection

    # -- opening ------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: Path, create: bool = True) -> Optional[JournalStore]:
        """Open (and with ``create``, create) the database and bring its schema up to date.

        Returns None when ``create`` is false and there is no database yet. Every failure is a
        :class:`JournalUnavailable` naming the path and the reason.
        """
        path = Path(path)
        try:
            if create:
                path.parent.mkdir(parents=True, exist_ok=True)
            elif not path.exists():
                return None
            uri = f"{path.resolve().as_uri()}?mode={'rwc' if create else 'rw'}"
            connection = sqlite3.connect(
                uri, uri=True, timeout=busy_timeout(), isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise JournalUnavailable(path, _reason(exc)) from None
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("PRAGMA foreign_keys=ON")
            migrate(connection)
        except (sqlite3.Error, NewerSchemaError) as exc:
            connection.close()
            raise JournalUnavailable(path, _reason(exc)) from None
        return cls(path, connection)

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.connection.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on an exception)."""
        connection = self.connection
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    @contextlib.contextmanager
    def guarded(self) -> Iterator[sqlite3.Connection]:
        """A write transaction whose sqlite errors become :class:`JournalUnavailable`."""
        try:
            with self.transaction() as connection:
                yield connection
        except sqlite3.Error as exc:
            raise JournalUnavailable(self.path, _reason(exc)) from None

    # -- a run's lifecycle ----------------------------------------------------------------------
    def insert_run(self, run: RunInfo, create_time: Optional[float], host: str) -> None:
        options = {key: value for key, value in run.options.items() if not key.startswith("_")}
        self.connection.execute(
            "INSERT INTO runs (id, app_name, pid, create_time, host, started_at, state, command, options,"
            " executor, workers, task_count, main_log, summary_csv, output_log)"
            " VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?)",
            (run.run_id, run.app_name, run.pid, create_time, host, run.started_at,
             to_sql_text(run.command_template), _json(options), run.executor, run.workers, run.task_count,
             to_sql_text(run.paths.main_log), to_sql_text(run.paths.summary_csv),
             to_sql_text(run.paths.output_log)),
        )

    def insert_jobs(self, run_id: str, tasks: Iterable[Task], max_attempts: int, now: float) -> int:
        """Store every task of a new run as a pending job; returns how many."""
        count = 0
        rows = (
            (run_id, task.index, to_sql_text(task.source), _json(list(task.argv)),
             _json([list(pair) for pair in task.env]), _json(list(task.arguments)), task.line_number,
             int(task.shell), max_attempts, now, now, now)
            for task in tasks
        )
        for chunk in _chunks(rows, INSERT_CHUNK):
            self.connection.executemany(
                "INSERT INTO jobs (run_id, position, source, argv, env, arguments, line_number, shell,"
                " state, max_attempts, next_attempt_at, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?)",
                chunk,
            )
            count += len(chunk)
        self.connection.execute("UPDATE runs SET task_count = ? WHERE id = ?", (count, run_id))
        return count

    def reopen_run(self, run: RunInfo, create_time: Optional[float], host: str) -> None:
        """A resumed run: the row belongs to this runner now, and is running again."""
        self.connection.execute(
            "UPDATE runs SET pid = ?, create_time = ?, host = ?, state = 'running', ended_at = NULL,"
            " exit_code = NULL, stop_reason = NULL, interrupted_by = NULL, resumes = resumes + 1,"
            " main_log = ?, summary_csv = ?, output_log = ? WHERE id = ?",
            (run.pid, create_time, host, to_sql_text(run.paths.main_log), to_sql_text(run.paths.summary_csv),
             to_sql_text(run.paths.output_log), run.run_id),
        )

    def requeue(self, run_id: str, job_ids: Optional[Sequence[int]], now: float, why: str) -> int:
        """Make jobs of a resumed run pending again: those not succeeded, or only ``job_ids``.

        A job still marked running belonged to a runner that died: its unfinished attempt is
        recorded as CANCELLED (``why``) so the history has no gap.
        """
        connection = self.connection
        if job_ids is None:
            where, groups = "run_id = ? AND state != 'succeeded'", [[]]
        else:
            where, groups = "run_id = ? AND state != 'succeeded' AND id IN ({})", list(_chunks(job_ids, 500))
        count = 0
        for group in groups:
            condition = where.format(", ".join("?" * len(group)))
            params = (run_id, *group)
            connection.execute(
                "INSERT OR REPLACE INTO attempts (job_id, attempt, status, worker_id, started_at, ended_at,"
                " error) SELECT id, attempts, 'CANCELLED', worker_id, started_at, ?, ?"
                f" FROM jobs WHERE {condition} AND state = 'running' AND attempts > 0",
                (now, why, *params),
            )
            cursor = connection.execute(
                "UPDATE jobs SET state = 'pending', next_attempt_at = ?, lease_owner = NULL,"
                f" lease_expires_at = NULL, updated_at = ? WHERE {condition}",
                (now, now, *params),
            )
            count += cursor.rowcount
        return count

    def finish_run(self, run_id: str, summary: RunSummary, now: float) -> None:
        if summary.interrupted_by:
            state = "interrupted"
        elif summary.stop_reason:
            state = "stopped"
        else:
            state = "finished"
        self.connection.execute(
            "UPDATE runs SET state = ?, ended_at = ?, exit_code = ?, total = ?, succeeded = ?, failed = ?,"
            " cancelled = ?, stop_reason = ?, interrupted_by = ? WHERE id = ?",
            (state, now, summary.exit_code, summary.total, summary.succeeded, summary.failed,
             summary.cancelled, to_sql_text(summary.stop_reason), summary.interrupted_by, run_id),
        )

    # -- a task's lifecycle (called by the writer thread) ----------------------------------------
    def task_started(self, run_id: str, task: Task, worker_id: int, now: float, owner: str) -> None:
        self.apply_batch([("task_started", (run_id, task, worker_id, now, owner))])

    def attempt_ended(
        self, run_id: str, result: TaskResult, now: float, retry_delay: Optional[float]
    ) -> None:
        """Record one finished attempt: the job's state and figures, and its history row.

        ``retry_delay`` is set for an attempt that will be retried (the job waits as
        failed/timeout); None for the task's final result.
        """
        self.apply_batch([("attempt_ended", (run_id, result, now, retry_delay))])

    def apply_batch(self, records: Sequence[Tuple[str, Tuple[Any, ...]]]) -> None:
        """Apply the writer's records (``(method name, arguments)``, in the order they happened)
        with one ``executemany`` per statement instead of one ``execute`` per record.

        A start whose attempt also ended within the batch is skipped (the end writes every column
        the start would). The remaining starts are applied after all ends: for any task they are
        later than its ends in the batch (a start of attempt k+1 follows the end of attempt k).
        Other records (``finish_run``) come last, in order.
        """
        ended = {
            (args[0], args[1].task.index, args[1].attempt)
            for name, args in records
            if name == "attempt_ended"
        }
        ran: List[Tuple[Any, ...]] = []
        history: List[Tuple[Any, ...]] = []
        not_ran: List[Tuple[Any, ...]] = []
        starts: List[Tuple[Any, ...]] = []
        others = []
        for name, args in records:
            if name == "attempt_ended":
                job, attempt = _ended_params(*args)
                if attempt is None:
                    not_ran.append(job)
                else:
                    ran.append(job)
                    history.append(attempt)
            elif name == "task_started":
                run_id, task, worker_id, now, owner = args
                if (run_id, task.index, task.attempt) not in ended:
                    starts.append((task.attempt, worker_id, now, owner, now, run_id, task.index))
            else:
                others.append((name, args))
        execute_many = self.connection.executemany
        for sql, rows in ((_RAN_SQL, ran), (_HISTORY_SQL, history), (_NOT_RAN_SQL, not_ran),
                          (_START_SQL, starts)):
            if rows:
                execute_many(sql, rows)
        for name, args in others:
            getattr(self, name)(*args)

    # -- reading --------------------------------------------------------------------------------
    def get_run(self, run_id: str) -> Optional[RunRecord]:
        row = self.connection.execute(
            f"SELECT {RunRecord.COLUMNS} FROM runs WHERE id = ?", (run_id,)
        ).fetchone()
        return RunRecord.from_row(row) if row else None

    def latest_run(self, app_name: Optional[str] = None) -> Optional[RunRecord]:
        """The newest run (of ``app_name`` if given)."""
        where, params = ("WHERE app_name = ?", (app_name,)) if app_name else ("", ())
        row = self.connection.execute(
            f"SELECT {RunRecord.COLUMNS} FROM runs {where} ORDER BY started_at DESC, id DESC LIMIT 1", params
        ).fetchone()
        return RunRecord.from_row(row) if row else None

    def list_runs(self, limit: Optional[int] = None) -> List[RunRecord]:
        rows = self.connection.execute(
            f"SELECT {RunRecord.COLUMNS} FROM runs ORDER BY started_at DESC, id DESC LIMIT ?",
            (-1 if limit is None else limit,),
        ).fetchall()
        return [RunRecord.from_row(row) for row in rows]

    def job_counts(self, run_id: str) -> Dict[str, int]:
        """``{state: count}`` of a run's jobs (states without jobs are absent)."""
        rows = self.connection.execute(
            "SELECT state, COUNT(*) FROM jobs WHERE run_id = ? GROUP BY state", (run_id,)
        ).fetchall()
        return dict(rows)

    def state_counts(self, run_id: str) -> Dict[Tuple[str, str], int]:
        """``{(state, last_status or ""): count}`` of a run's jobs."""
        rows = self.connection.execute(
            "SELECT state, COALESCE(last_status, ''), COUNT(*) FROM jobs WHERE run_id = ?"
            " GROUP BY state, COALESCE(last_status, '')",
            (run_id,),
        ).fetchall()
        return {(state, last_status): count for state, last_status, count in rows}

    def iter_jobs(self, run_id: str, *, exclude_succeeded: bool = False,
                  states: Optional[Sequence[str]] = None) -> Iterator[JobRecord]:
        """A run's jobs by position, read a page at a time (no transaction stays open between
        pages, so a run that writes meanwhile is never held up and memory stays flat)."""
        conditions = ["run_id = ?", "position > ?"]
        extra: List[Any] = []
        if exclude_succeeded:
            conditions.append("state != 'succeeded'")
        if states:
            conditions.append(f"state IN ({', '.join('?' * len(states))})")
            extra.extend(states)
        query = (
            f"SELECT {JobRecord.COLUMNS} FROM jobs WHERE {' AND '.join(conditions)}"
            f" ORDER BY position LIMIT {PAGE_SIZE}"
        )
        after = -1
        while True:
            rows = self.connection.execute(query, (run_id, after, *extra)).fetchall()
            for row in rows:
                yield JobRecord.from_row(row)
            if len(rows) < PAGE_SIZE:
                return
            after = rows[-1][2]

    def jobs_by_ids(self, job_ids: Sequence[int]) -> List[JobRecord]:
        """The jobs with these IDs, by run and position (unknown IDs are simply absent)."""
        found = list(self.iter_jobs_by_ids(job_ids))
        found.sort(key=lambda job: (job.run_id or "", job.position or 0, job.id))
        return found

    def iter_jobs_by_ids(self, job_ids: Sequence[int]) -> Iterator[JobRecord]:
        """The jobs with these IDs in ID order, a page at a time. Within one run the IDs were
        given in position order, so this is also the run's order."""
        for group in _chunks(sorted(set(job_ids)), PAGE_SIZE):
            marks = ", ".join("?" * len(group))
            rows = self.connection.execute(
                f"SELECT {JobRecord.COLUMNS} FROM jobs WHERE id IN ({marks}) ORDER BY id", group
            ).fetchall()
            for row in rows:
                yield JobRecord.from_row(row)

    def dead_jobs(self, run_id: Optional[str] = None) -> Iterator[JobRecord]:
        where, params = ("state = 'dead' AND run_id = ?", (run_id,)) if run_id else ("state = 'dead'", ())
        cursor = self.connection.execute(
            f"SELECT {JobRecord.COLUMNS} FROM jobs WHERE {where} ORDER BY id", params
        )
        for row in cursor:
            yield JobRecord.from_row(row)

    def attempts_of(self, job_id: int) -> List[AttemptRecord]:
        rows = self.connection.execute(
            f"SELECT {AttemptRecord.COLUMNS} FROM attempts WHERE job_id = ? ORDER BY attempt", (job_id,)
        ).fetchall()
        return [AttemptRecord.from_row(row) for row in rows]


def now() -> float:
    return time.time()
