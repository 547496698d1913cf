"""SqlJobStore: the job store's statements, written once for SQLite and PostgreSQL.

:class:`~parallelr.jobs.sqlite.SQLiteJobStore` and :class:`~parallelr.jobs.postgres.PostgresJobStore`
are its two implementations: each brings a connection whose ``execute`` takes these statements
(``?`` placeholders; the PostgreSQL connection translates them), its transactions, its errors and
its :class:`Dialect`: the few places where the two databases differ (row locks, a floor, hints to
SQLite's planner). The queue's statements are in :mod:`.sql_queue` and :mod:`.sql_workers`.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from parallelr.jobs.batch import AttemptEnd, Record, job_keys, plan_batch
from parallelr.jobs.errors import LeaseLost, StoreUnavailable
from parallelr.jobs.leases import LEASE_SECONDS, Lease
from parallelr.jobs.records import AttemptRecord, ClaimedJob, JobRecord, RunRecord
from parallelr.jobs.sql_dialect import Dialect
from parallelr.jobs.sql_queue import SqlQueueMixin, upsert_attempt
from parallelr.jobs.sql_text import from_sql_text, to_sql_text
from parallelr.jobs.sql_workers import SqlWorkersMixin
from parallelr.jobs.states import JobState, RunState, sources_of
from parallelr.model import RunInfo, RunSummary, Task, TaskResult, TaskStatus

INSERT_CHUNK = 1000  # rows per executemany when a run's tasks are stored
PAGE_SIZE = 500  # rows per query when jobs are streamed back


# -- values <-> columns -------------------------------------------------------------------------
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
_HISTORY_SQL = upsert_attempt(
    "job_id, attempt, status, exit_code, pid, worker_id, started_at, ended_at, duration, memory_mb,"
    " cpu_percent, error",
    "SELECT id, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? FROM jobs WHERE run_id = ? AND position = ?",
)
# Never started (cancelled before it got a slot): the attempt count stays what it was.
_NOT_RAN_SQL = (
    "UPDATE jobs SET state = ?, next_attempt_at = ?, lease_owner = NULL, last_error = ?, last_status = ?,"
    " updated_at = ? WHERE run_id = ? AND position = ?"
)
# An attempt whose holder is gone ends as CANCELLED in the history (requeue, reclaim).
_ABANDONED_SQL = upsert_attempt(
    "job_id, attempt, status, worker_id, started_at, ended_at, error",
    "SELECT id, attempts, ?, worker_id, started_at, ?, ? FROM jobs"
    " WHERE {where} AND state = ? AND attempts > 0",
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


class SqlJobStore(SqlQueueMixin, SqlWorkersMixin):
    """The :class:`~parallelr.jobs.store.JobStore` and :class:`~parallelr.jobs.store.QueueStore`
    methods over one connection. A subclass provides ``connection``, ``dialect``, ``location``,
    ``close()``, ``change_counter()``, ``now()``, what begins a write transaction
    (``_BEGIN``), the driver's errors (``database_errors``, turned into StoreUnavailable by
    ``_unavailable``) and, if it needs one, what to do before a statement (``_before_use``).

    Not thread-safe: one thread uses it at a time.
    """

    # What apply_batch may call besides the task records (see parallelr.jobs.batch).
    _BATCH_METHODS = frozenset({"finish_run", "renew_run_lease", "cancel_not_started"})

    connection: Any
    dialect: Dialect
    database_errors: Tuple[type, ...] = ()  # what the driver raises; each becomes StoreUnavailable
    _BEGIN = "BEGIN"

    @property
    def location(self) -> str:
        raise NotImplementedError

    def _unavailable(self, exc: BaseException) -> StoreUnavailable:
        raise NotImplementedError

    def _before_use(self) -> None:
        """Called before a transaction or a read outside one (PostgreSQL: a lost connection is
        replaced)."""

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """``_BEGIN`` ... ``COMMIT`` (``ROLLBACK`` on an exception); the driver's errors become
        :class:`~parallelr.jobs.errors.StoreUnavailable`."""
        self._before_use()
        connection = self.connection
        try:
            connection.execute(self._BEGIN)
            try:
                yield
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
        except self.database_errors as exc:
            raise self._unavailable(exc) from None

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        """Reads fail like writes: a corrupt page a query runs into, or a lost connection, is a
        StoreUnavailable."""
        if not self.connection.in_transaction:
            self._before_use()
        try:
            yield
        except self.database_errors as exc:
            raise self._unavailable(exc) from None

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """The caller's transaction, or one of its own (a claim must be atomic either way)."""
        if self.connection.in_transaction:
            yield
        else:
            with self.transaction():
                yield

    def now(self) -> float:
        """The store's clock (epoch seconds): what every holder of a lease must agree on."""
        raise NotImplementedError

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
            " OR lease_owner = ?)",  # a NULL owner is the first case
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
        return [int(execute(_INSERT_JOB_SQL + " RETURNING id",
                            self._job_row(None, queue, task, max_attempts, now)).fetchone()[0])
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
        with self._writing():  # SQLite's one write lock, or PostgreSQL's row locks: atomic
            ids = [row[0] for row in self.connection.execute(
                f"SELECT id FROM jobs WHERE {scope} AND ((state IN ({_marks(len(_CLAIMABLE))})"
                " AND next_attempt_at <= ?) OR (state = ? AND lease_expires_at <= ?))"
                f" ORDER BY next_attempt_at, id LIMIT ?{self.dialect.claim_lock}",
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
                (self.dialect.no_limit if limit is None else limit,),
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
